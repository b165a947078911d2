//! Encode once: a publish to many subscribers does not copy the payload
//! per subscriber. A counting allocator (this test binary's global one)
//! counts the bytes the publishing thread allocates during a publish; with
//! a copy per subscriber it would be subscribers x payload.
//!
//! Only the publishing thread's allocations count (a thread-local switch):
//! the connections' own threads allocate read buffers meanwhile. Writer
//! threads and their queues are started by a first, unmeasured publish.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::BufReader;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::unbounded;
use support::*;
use syncws::{Config, Hub, Listener, OwnedMessage, Prepared, Result, Sender, WsHandshake, WsOption, WsTrait};

struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
thread_local!(static COUNTING: Cell<bool> = const { Cell::new(false) });

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: forwarded as is to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above, with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        }
        // SAFETY: as `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes the calling thread allocates while running `f`.
fn allocated_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATED.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    (out, ALLOCATED.load(Ordering::Relaxed) - before)
}

struct Sub(Hub, crossbeam_channel::Sender<Sender>);

impl WsTrait for Sub {
    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        self.0.subscribe(&shake.sender, "t");
        let _ = self.1.send(shake.sender);
        Ok(None)
    }
    fn on_message(&mut self, _msg: OwnedMessage) -> Result<()> {
        Ok(())
    }
}

fn read_frame(r: &mut impl Read) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    r.read_exact(&mut h).unwrap();
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).unwrap();
            usize::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            r.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => usize::from(n),
    };
    let mut p = vec![0; len];
    r.read_exact(&mut p).unwrap();
    (h[0], p)
}

#[test]
fn a_publish_does_not_copy_the_payload_per_subscriber() {
    const SUBS: usize = 100;
    init_log();
    let hub = Hub::new();
    let (tx, rx) = unbounded();
    let h = hub.clone();
    let running = Listener::bind_with_config("127.0.0.1:0", Config::default())
        .unwrap()
        .spawn(move |server| server.set_callback_ws(Box::new(Sub(h.clone(), tx.clone()))))
        .unwrap();
    let clients: Vec<_> = (0..SUBS)
        .map(|_| {
            let s = raw_ws_at(running.local_addr(), "/t");
            rx.recv_timeout(WAIT).expect("on_open");
            s
        })
        .collect();
    assert_eq!(hub.subscribers("t"), SUBS);
    // A large payload goes through each subscriber's queue (the writer
    // thread writes it from the shared buffer); a small one is written by
    // the publishing thread itself, from the shared buffer too.
    let large = Prepared::binary(&bytes(256 << 10, 1));
    let small = Prepared::binary(&bytes(4 << 10, 2));
    // Unmeasured: starts the queues and writer threads.
    assert_eq!(hub.publish("t", &large).delivered, SUBS);
    let (report, large_bytes) = allocated_by(|| hub.publish("t", &large));
    assert_eq!(report.delivered, SUBS);
    let (report, small_bytes) = allocated_by(|| hub.publish("t", &small));
    assert_eq!(report.delivered, SUBS);
    eprintln!("allocated by a publish to {SUBS}: {large_bytes} B for 256 KiB, {small_bytes} B for 4 KiB");
    // A copy per subscriber would be 25 MiB and 400 KiB.
    assert!(large_bytes < (256 << 10) / 4, "{large_bytes} bytes allocated");
    assert!(small_bytes < (4 << 10) * SUBS / 10, "{small_bytes} bytes allocated");
    // And every subscriber got the very bytes.
    for s in clients {
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut r = BufReader::new(s);
        for want in [&large, &large, &small] {
            let (first, payload) = read_frame(&mut r);
            assert_eq!(first, 0x82);
            let header = want.wire_len() - payload.len();
            assert_eq!(&want.as_bytes()[header..], &payload[..]);
        }
    }
    running.shutdown();
}
