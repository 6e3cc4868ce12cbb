//! A TCP fault proxy in front of the real FerretDB (docs/ARCHITECTURE.md §8): the fault tests make an
//! outage or lose one write's reply without stopping the FerretDB that parallel suites share.
//!
//! It reads the wire protocol only as far as it must: every message is length-prefixed, and an
//! `OP_MSG` (opcode 2013) carries its command in a kind-0 section, a BSON document whose first
//! key is the command's name. Loopback only, bounded in connections and message size; dropping
//! the proxy stops it and cuts every connection.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// At most this many client connections at once; further ones are closed on accept.
const MAX_CONNECTIONS: usize = 256;
/// MongoDB's largest message (`maxMessageSizeBytes`); anything larger is garbage.
const MAX_MESSAGE: usize = 48_000_000;
const OP_MSG: i32 = 2013;

/// A proxy that forwards to a MongoDB-protocol server until told to fail.
pub struct FaultProxy {
    port: u16,
    /// What the upstream URI carried beyond its host (credentials, options), kept in `uri()`.
    userinfo: String,
    state: Arc<State>,
    accept: AbortHandle,
}

#[derive(Default)]
struct State {
    upstream: String,
    refusing: AtomicBool,
    /// The command whose next reply is to be lost.
    drop_next: Mutex<Option<String>>,
    connections: Mutex<Vec<AbortHandle>>,
    open: AtomicUsize,
    accepted: AtomicUsize,
    refused: AtomicUsize,
    dropped: AtomicUsize,
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1:0` in front of `upstream` (`host:port`, or a `mongodb://`
    /// URI whose first host is taken).
    pub async fn start(upstream: &str) -> FaultProxy {
        let (address, userinfo) = upstream_address(upstream);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let port = listener.local_addr().expect("the proxy's address").port();
        let state = Arc::new(State { upstream: address, ..Default::default() });
        let accept = tokio::spawn(accept_loop(listener, state.clone())).abort_handle();
        FaultProxy { port, userinfo, state, accept }
    }

    /// A connection string to the upstream through this proxy (a direct connection: the driver
    /// must not go looking for the upstream's own address).
    pub fn uri(&self) -> String {
        format!("mongodb://{}127.0.0.1:{}/?directConnection=true", self.userinfo, self.port)
    }

    /// The `host:port` the proxy listens on.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// While on, new connections are closed as soon as they are accepted, and turning it on
    /// cuts every open connection: to the driver, the server is gone.
    pub fn set_refusing(&self, on: bool) {
        // Under the connections' lock, which the accept loop holds from its check to its push,
        // so that no connection accepted just before can outlive the switch.
        let mut connections = self.state.connections.lock().expect("poisoned");
        self.state.refusing.store(on, Ordering::SeqCst);
        if on {
            for connection in connections.drain(..) {
                connection.abort();
            }
        }
    }

    /// Forwards the next client message whose `OP_MSG` command is `command` (e.g.
    /// `findAndModify`, `update`, `insert`, `delete`), then drops its reply and closes that
    /// connection: the write happened, its caller never hears so.
    pub fn drop_reply_of_next(&self, command: &str) {
        *self.state.drop_next.lock().expect("poisoned") = Some(command.to_owned());
    }

    /// Whether a `drop_reply_of_next` is still waiting for its command.
    pub fn drop_pending(&self) -> bool {
        self.state.drop_next.lock().expect("poisoned").is_some()
    }

    /// How many replies were dropped so far.
    pub fn replies_dropped(&self) -> usize {
        self.state.dropped.load(Ordering::SeqCst)
    }

    /// How many connections were closed on accept because the proxy was refusing.
    pub fn refused(&self) -> usize {
        self.state.refused.load(Ordering::SeqCst)
    }

    /// How many connections were forwarded so far.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for connection in self.state.connections.lock().expect("poisoned").drain(..) {
            connection.abort();
        }
    }
}

/// `host:port` and the `user:password@` part (possibly empty) of an upstream.
fn upstream_address(upstream: &str) -> (String, String) {
    let Some(rest) = upstream.strip_prefix("mongodb://") else { return (upstream.to_owned(), String::new()) };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((user, hosts)) => (format!("{user}@"), hosts),
        None => (String::new(), authority),
    };
    let host = hosts.split(',').next().unwrap_or_default();
    let host = if host.contains(':') { host.to_owned() } else { format!("{host}:27017") };
    (host, userinfo)
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors, say: wait for the next accept rather than spin on the error.
            Err(_) => {
                tokio::task::yield_now().await;
                continue;
            }
        };
        let mut connections = state.connections.lock().expect("poisoned");
        if !peer.ip().is_loopback() || state.refusing.load(Ordering::SeqCst) || state.open.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            state.refused.fetch_add(1, Ordering::SeqCst);
            drop(client);
            continue;
        }
        state.accepted.fetch_add(1, Ordering::SeqCst);
        state.open.fetch_add(1, Ordering::SeqCst);
        let task_state = state.clone();
        let handle = tokio::spawn(async move {
            let _open = OpenConnection(task_state.clone());
            let _ = relay(client, task_state).await;
        })
        .abort_handle();
        connections.retain(|c| !c.is_finished());
        connections.push(handle);
    }
}

/// Counts a connection open until its task ends, aborted or not.
struct OpenConnection(Arc<State>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Relays one connection both ways until either side closes or a reply is dropped.
async fn relay(client: TcpStream, state: Arc<State>) -> std::io::Result<()> {
    let server = TcpStream::connect(&state.upstream).await?;
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // The request id whose reply is to be lost, or -1 while none is.
    let lose = AtomicI64::new(-1);
    let upward = forward_requests(&mut client_read, &mut server_write, &state, &lose);
    let downward = forward_replies(&mut server_read, &mut client_write, &state, &lose);
    // Whichever side ends first ends the connection: both sockets drop here.
    tokio::select! {
        result = upward => result,
        result = downward => result,
    }
}

/// Client to server: arms `lose` with the request id of the message the test named.
async fn forward_requests(from: &mut OwnedReadHalf, to: &mut OwnedWriteHalf, state: &State, lose: &AtomicI64) -> std::io::Result<()> {
    loop {
        let message = read_message(from).await?;
        if command_name(&message).is_some_and(|name| take_if_armed(state, &name)) {
            lose.store(i64::from(request_id(&message)), Ordering::SeqCst);
        }
        to.write_all(&message).await?;
    }
}

/// Server to client, until the reply to the armed request id, which is swallowed.
async fn forward_replies(from: &mut OwnedReadHalf, to: &mut OwnedWriteHalf, state: &State, lose: &AtomicI64) -> std::io::Result<()> {
    loop {
        let message = read_message(from).await?;
        let target = lose.load(Ordering::SeqCst);
        if target >= 0 && i64::from(response_to(&message)) == target {
            state.dropped.fetch_add(1, Ordering::SeqCst);
            return Ok(());
        }
        to.write_all(&message).await?;
    }
}

fn take_if_armed(state: &State, name: &str) -> bool {
    let mut armed = state.drop_next.lock().expect("poisoned");
    if armed.as_deref() == Some(name) {
        *armed = None;
        true
    } else {
        false
    }
}

/// One whole wire message, header included.
async fn read_message(stream: &mut OwnedReadHalf) -> std::io::Result<Vec<u8>> {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).await?;
    let length = i32::from_le_bytes(length);
    let length = usize::try_from(length).ok().filter(|l| (16..=MAX_MESSAGE).contains(l));
    let Some(length) = length else { return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "a bad message length")) };
    let mut message = vec![0u8; length];
    message[..4].copy_from_slice(&(length as i32).to_le_bytes());
    stream.read_exact(&mut message[4..]).await?;
    Ok(message)
}

fn header_field(message: &[u8], at: usize) -> i32 {
    i32::from_le_bytes(message[at..at + 4].try_into().expect("a 16-byte header"))
}

fn request_id(message: &[u8]) -> i32 {
    header_field(message, 4)
}

fn response_to(message: &[u8]) -> i32 {
    header_field(message, 8)
}

/// The command of an `OP_MSG`: the first key of its body section (kind 0), which the driver
/// sends first.
fn command_name(message: &[u8]) -> Option<String> {
    if header_field(message, 12) != OP_MSG {
        return None;
    }
    // Header (16), flag bits (4), then sections; the body's kind byte, its document's length
    // (4), the first element's type (1), then the element's name as a C string.
    let mut at = 20;
    while at < message.len() {
        let kind = message[at];
        if kind == 0 {
            let name_start = at + 1 + 4 + 1;
            let rest = message.get(name_start..)?;
            let end = rest.iter().position(|b| *b == 0)?;
            return String::from_utf8(rest[..end].to_vec()).ok();
        }
        // Kind 1 (a document sequence): its size (4, self-inclusive) follows the kind byte.
        let size = usize::try_from(i32::from_le_bytes(message.get(at + 1..at + 5)?.try_into().ok()?)).ok()?;
        at += 1 + size;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_uri_gives_its_first_host_and_credentials() {
        assert_eq!(upstream_address("mongodb://127.0.0.1:27217/"), ("127.0.0.1:27217".into(), String::new()));
        assert_eq!(upstream_address("127.0.0.1:27217"), ("127.0.0.1:27217".into(), String::new()));
        assert_eq!(upstream_address("mongodb://u:p@h1:1,h2:2/db?x=1"), ("h1:1".into(), "u:p@".into()));
        assert_eq!(upstream_address("mongodb://localhost"), ("localhost:27017".into(), String::new()));
    }

    #[test]
    fn an_op_msg_names_its_command_by_the_body_s_first_key() {
        let body = mongodb::bson::doc! {"findAndModify": "tenants", "$db": "t"};
        let mut bytes = Vec::new();
        body.to_writer(&mut bytes).unwrap();
        let mut message = vec![0u8; 16];
        message[12..16].copy_from_slice(&OP_MSG.to_le_bytes());
        message.extend_from_slice(&0u32.to_le_bytes());
        message.push(0);
        message.extend_from_slice(&bytes);
        let length = message.len() as i32;
        message[..4].copy_from_slice(&length.to_le_bytes());
        assert_eq!(command_name(&message).as_deref(), Some("findAndModify"));
    }
}
