//! Idle HTTP/1.1 upstream connections, kept per worker thread for the next request to the same
//! endpoint.
//!
//! Gantry's workers are single-threaded runtimes (Pingora's no-steal mode), and a socket is
//! registered with the runtime that opened it; a pool per thread needs no lock and never hands a
//! socket to another thread's reactor. A connection is checked when it is taken (a closed one is
//! readable, and tokio knows that without a system call until the socket has had an event), and
//! a sweep on each thread closes those idle past [`IDLE_TIMEOUT`] or closed by the upstream, as
//! Pingora's per-connection idle watch did without a task per connection.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::upstream::endpoint::OpenConnection;

/// How long an idle upstream connection is kept.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most idle connections kept to one endpoint by one thread.
const MOST_PER_ENDPOINT: usize = 128;

struct Idle {
    stream: TcpStream,
    /// Counts it at its endpoint while it is kept.
    open: Option<OpenConnection>,
    since: Instant,
}

#[derive(Default)]
struct Pool {
    by_endpoint: HashMap<SocketAddr, VecDeque<Idle>>,
    sweeping: bool,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// An idle connection to `addr` that is still open, the most recently used first, with what
/// counts it at its endpoint.
pub(super) fn take(addr: SocketAddr) -> Option<(TcpStream, Option<OpenConnection>)> {
    POOL.with_borrow_mut(|pool| {
        let idle = pool.by_endpoint.get_mut(&addr)?;
        while let Some(conn) = idle.pop_back() {
            if conn.since.elapsed() < IDLE_TIMEOUT && still_open(&conn.stream) {
                return Some((conn.stream, conn.open));
            }
        }
        None
    })
}

/// Keeps a connection whose last response ended cleanly.
pub(super) fn put(addr: SocketAddr, stream: TcpStream, open: Option<OpenConnection>) {
    let start_sweeping = POOL.with_borrow_mut(|pool| {
        let idle = pool.by_endpoint.entry(addr).or_default();
        if idle.len() >= MOST_PER_ENDPOINT {
            idle.pop_front();
        }
        idle.push_back(Idle {
            stream,
            open,
            since: Instant::now(),
        });
        !std::mem::replace(&mut pool.sweeping, true)
    });
    if start_sweeping {
        // Spawned on this thread's runtime, so it sweeps this thread's pool.
        tokio::spawn(async {
            loop {
                tokio::time::sleep(IDLE_TIMEOUT / 4).await;
                POOL.with_borrow_mut(Pool::sweep);
            }
        });
    }
}

impl Pool {
    fn sweep(&mut self) {
        for idle in self.by_endpoint.values_mut() {
            idle.retain(|conn| conn.since.elapsed() < IDLE_TIMEOUT && still_open(&conn.stream));
        }
        self.by_endpoint.retain(|_, idle| !idle.is_empty());
    }
}

/// An idle connection has nothing to read: a readable one was closed by the upstream (or sent
/// bytes no request asked for), and is no use.
fn still_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.unwrap(), server.unwrap().0)
    }

    #[tokio::test]
    async fn a_kept_connection_is_taken_again_until_its_upstream_closes_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = pair(&listener).await;
        put(addr, client, None);
        let (client, _) = take(addr).expect("the open connection is taken");
        assert!(
            take(addr).is_none(),
            "one connection was kept, and it is taken"
        );
        put(addr, client, None);

        drop(server);
        // The close reaches the client's socket; poll until tokio has seen it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match take(addr) {
                None => break,
                Some((client, open)) => put(addr, client, open),
            }
            assert!(
                Instant::now() < deadline,
                "a closed connection is still taken"
            );
            tokio::task::yield_now().await;
        }
    }
}
