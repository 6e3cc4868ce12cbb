//! What the driver knows of the servers, learnt from its monitoring events (SDAM), never from a
//! round trip of ours (docs/ARCHITECTURE.md §6). With no server known available, a write
//! answers 503 at once instead of waiting on the write serialisation behind calls that are
//! themselves waiting for a server: an outage is a fast failure, not a queue.

use mongodb::event::sdam::SdamEvent;
use mongodb::event::EventHandler;
use mongodb::options::ServerAddress;
use mongodb::ServerType;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// What the driver knows of the deployment's servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// No event yet (a client that has not finished its first check): nothing is refused.
    Unknown,
    /// At least one server answered its last check.
    Available,
    /// Every server the driver knows failed its last check, or an operation's network error
    /// marked it unknown.
    Unavailable,
}

/// One client's view of its servers, fed by its SDAM events.
#[derive(Debug)]
pub(crate) struct Health {
    servers: Mutex<HashMap<ServerAddress, bool>>,
    state: watch::Sender<ServerState>,
    /// Whether a wake-up of the driver's monitor is under way (see [`Health::probe`]).
    probing: AtomicBool,
}

impl Health {
    pub(crate) fn new() -> Arc<Health> {
        Arc::new(Health { servers: Mutex::default(), state: watch::Sender::new(ServerState::Unknown), probing: AtomicBool::new(false) })
    }

    /// The handler to install in the client's options (`sdam_event_handler`).
    pub(crate) fn handler(self: &Arc<Self>) -> EventHandler<SdamEvent> {
        let health = Arc::downgrade(self);
        EventHandler::callback(move |event: SdamEvent| {
            if let Some(health) = health.upgrade() {
                health.observe(&event);
            }
        })
    }

    fn observe(&self, event: &SdamEvent) {
        let mut servers = self.servers.lock().expect("poisoned");
        match event {
            SdamEvent::ServerDescriptionChanged(changed) => {
                servers.insert(changed.address.clone(), changed.new_description.server_type() != ServerType::Unknown);
            }
            SdamEvent::ServerHeartbeatSucceeded(beat) => {
                servers.insert(beat.server_address.clone(), true);
            }
            SdamEvent::ServerHeartbeatFailed(beat) => {
                servers.insert(beat.server_address.clone(), false);
            }
            SdamEvent::ServerClosed(closed) => {
                servers.remove(&closed.address);
            }
            _ => return,
        }
        let state = if servers.values().any(|up| *up) {
            ServerState::Available
        } else if servers.is_empty() {
            ServerState::Unknown
        } else {
            ServerState::Unavailable
        };
        drop(servers);
        self.state.send_if_modified(|current| std::mem::replace(current, state) != state);
    }

    /// The state now.
    pub(crate) fn state(&self) -> ServerState {
        *self.state.borrow()
    }

    /// Watches the state.
    pub(crate) fn subscribe(&self) -> watch::Receiver<ServerState> {
        self.state.subscribe()
    }

    /// Wakes the driver's monitor while nothing reaches the server: a refused call sends no
    /// command, so without this the monitor would look again only at its next heartbeat (10 s).
    /// One `ping` to `admin` at a time, in the background: its server selection asks the monitor
    /// for an immediate check (at most every 500 ms), and the monitor's answer, not the ping's,
    /// changes the state. Only ever sent while no server is available: a warm call with the
    /// database up pays no round trip for it.
    pub(crate) fn probe(self: &Arc<Self>, client: &mongodb::Client) {
        if self.probing.swap(true, Ordering::SeqCst) {
            return;
        }
        let (health, admin) = (self.clone(), client.database("admin"));
        tokio::spawn(async move {
            let _ = admin.run_command(mongodb::bson::doc! {"ping": 1}).await;
            health.probing.store(false, Ordering::SeqCst);
        });
    }
}

/// The error of a call refused because no server is available: what
/// [`super::DbError::Unavailable`] carries then.
#[derive(Debug, Clone, Copy)]
pub struct NoAvailableServer;

impl std::fmt::Display for NoAvailableServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no database server is available (from the driver's monitoring)")
    }
}
