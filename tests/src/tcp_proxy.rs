//! A TCP proxy a test controls, for putting faults between the server and its database:
//! forward every connection to an upstream address; cut every live connection and refuse
//! new ones (the listening socket is closed, so connects get RST, as with a stopped
//! database); stall (live connections stop carrying bytes and new ones are accepted and
//! never answered, as with a network that drops packets); restore.
//!
//! Loopback only: it listens on `127.0.0.1`, on one port for its whole life.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with new connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Connect to the upstream and copy bytes both ways.
    Forward,
    /// Accept, then hold the socket open without a byte in either direction.
    Hold,
}

pub struct TcpProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    accept: Mutex<Option<JoinHandle<()>>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// True while live connections may not carry bytes.
    stalled: watch::Sender<bool>,
}

impl TcpProxy {
    /// Starts forwarding `127.0.0.1:<random>` to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let proxy = Self {
            addr,
            upstream,
            accept: Mutex::new(None),
            connections: Arc::new(Mutex::new(Vec::new())),
            stalled: watch::Sender::new(false),
        };
        proxy.serve(listener, Mode::Forward);
        proxy
    }

    /// Where clients connect: `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Live connections (forwarded or held).
    pub fn live_connections(&self) -> usize {
        let mut connections = self.lock_connections();
        connections.retain(|c| !c.is_finished());
        connections.len()
    }

    /// Closes every live connection and the listening socket: new connects are refused.
    /// When this returns, both have happened.
    pub async fn cut(&self) {
        self.stop_accepting().await;
        self.close_connections().await;
    }

    /// Live connections stop carrying bytes (they stay open) and new ones are accepted
    /// and held without a byte in either direction.
    pub async fn stall(&self) {
        self.stalled.send_replace(true);
        self.stop_accepting().await;
        self.serve(self.rebind().await, Mode::Hold);
    }

    /// Forwards again, on the same port. Connections from before (stalled or held) are
    /// closed first.
    pub async fn restore(&self) {
        self.stop_accepting().await;
        self.close_connections().await;
        self.stalled.send_replace(false);
        self.serve(self.rebind().await, Mode::Forward);
    }

    fn serve(&self, listener: TcpListener, mode: Mode) {
        let connections = self.connections.clone();
        let upstream = self.upstream;
        let stalled = self.stalled.subscribe();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                let pipe = tokio::spawn(pipe(inbound, upstream, mode, stalled.clone()));
                let mut live = connections.lock().unwrap_or_else(PoisonError::into_inner);
                live.retain(|c| !c.is_finished());
                live.push(pipe);
            }
        });
        *self.accept.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
    }

    async fn stop_accepting(&self) {
        let task = self
            .accept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.abort();
            // The listener is dropped with the task: awaited, so it is closed on return.
            let _ = task.await;
        }
    }

    async fn close_connections(&self) {
        let live: Vec<_> = self.lock_connections().drain(..).collect();
        for connection in &live {
            connection.abort();
        }
        for connection in live {
            let _ = connection.await;
        }
    }

    /// The same port again. SO_REUSEADDR lets it be bound while closed connections on it
    /// are in TIME_WAIT.
    async fn rebind(&self) -> TcpListener {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let socket = TcpSocket::new_v4().expect("a socket");
            socket.set_reuseaddr(true).expect("SO_REUSEADDR");
            match socket.bind(self.addr).and_then(|()| socket.listen(1024)) {
                Ok(listener) => return listener,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "proxy port not free yet");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot listen on {} again: {e}", self.addr),
            }
        }
    }

    fn lock_connections(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(task) = self
            .accept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
        for connection in self.lock_connections().drain(..) {
            connection.abort();
        }
    }
}

async fn pipe(
    inbound: TcpStream,
    upstream: SocketAddr,
    mode: Mode,
    stalled: watch::Receiver<bool>,
) {
    match mode {
        Mode::Forward => {
            let Ok(outbound) = TcpStream::connect(upstream).await else {
                return;
            };
            let (from_client, to_client) = inbound.into_split();
            let (from_server, to_server) = outbound.into_split();
            tokio::join!(
                copy(from_client, to_server, stalled.clone()),
                copy(from_server, to_client, stalled),
            );
        }
        Mode::Hold => {
            // Keep the socket until the proxy closes it; read nothing, write nothing.
            let _held = inbound;
            std::future::pending::<()>().await;
        }
    }
}

/// Copies one direction, holding back every chunk while the proxy is stalled.
async fn copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if stalled.wait_for(|s| !*s).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
