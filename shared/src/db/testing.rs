//! What only tests use of the database handle: a client of their own, one that counts round
//! trips, and views of the health monitor and the write serialisation. Behind the `testing`
//! feature (the test crates enable it), so that no Lambda binary carries it.

use super::{client_options, monitored_client, Db, DbError, ServerState};
use crate::config::DbConfig;
use std::sync::Arc;

impl Db {
    /// Waits until the driver's monitoring events say `state` (tests wait for an outage to be
    /// seen, or for its end, rather than sleeping).
    pub async fn until_server_state(&self, state: ServerState) {
        let _ = self.health.subscribe().wait_for(|s| *s == state).await;
    }

    /// How many times this process took this database's write serialisation (tests check that
    /// an outage takes it never).
    pub fn serial_taken(&self) -> u64 {
        super::SERIALS.lock().expect("poisoned").get(self.name()).map_or(0, |s| s.taken.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// The database through a new client of its own: for tests, whose runtimes come and go.
    pub async fn connect(cfg: &DbConfig) -> Result<Db, DbError> {
        let (client, health) = monitored_client(client_options(cfg)).await?;
        Ok(Db::new(client.database(&cfg.database), health))
    }

    /// The database through a new client that counts the commands it sends to this database
    /// (`cfg.database`, so that each test's count is its own): for tests that hold a path to its
    /// number of round trips. Not counted: the driver's own handshakes and authentication
    /// (`hello`, `isMaster`, `saslStart`, `saslContinue`), anything sent to another database
    /// (`endSessions` goes to `admin`), and `buildInfo`, which [`Db::flavor`] sends once per
    /// handle: a test warms the handle with `flavor()` first, so that no measured call pays it.
    /// `getMore` and `killCursors` on this database count: they are round trips too.
    pub async fn connect_counting(cfg: &DbConfig) -> Result<(Db, Arc<std::sync::atomic::AtomicU64>), DbError> {
        use mongodb::event::command::CommandEvent;
        let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut options = client_options(cfg).await?;
        let counter = count.clone();
        let database = cfg.database.clone();
        options.command_event_handler = Some(mongodb::event::EventHandler::callback(move |event: CommandEvent| {
            if let CommandEvent::Started(started) = event {
                let uncounted = matches!(
                    started.command_name.as_str(),
                    "hello" | "isMaster" | "ismaster" | "saslStart" | "saslContinue" | "buildInfo" | "buildinfo"
                );
                if started.db == database && !uncounted {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }));
        let (client, health) = monitored_client(async { Ok(options) }).await?;
        Ok((Db::new(client.database(&cfg.database), health), count))
    }
}
