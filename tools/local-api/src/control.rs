//! The local control channel's credential (docs/ARCHITECTURE.md §6). `POST /_local/migrations`
//! runs any migrations action, `shred` included, so the Origin check (which stops browsers) is
//! not enough: any local process could call it. A serving local API therefore makes a random
//! token, writes it to `<checkout>/.cache/run/local-api-<port>.token` (mode 0600, so only its
//! user reads it) and removes it on stop; `local-api migrate` finds the port in the serve lease,
//! reads the file and sends the token in [`CONTROL_TOKEN_HEADER`]. The token and the path stay
//! on this machine: neither goes into the database.
//!
//! `<checkout>` comes from the binary's own path, as `scripts/lib.sh` finds the root from its
//! own, so that a command run from any working directory finds the same file.

use std::io::Write;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// The header the token travels in.
pub const CONTROL_TOKEN_HEADER: &str = "x-local-control-token";

/// Random bytes in a token: 256 bits from the OS generator.
const TOKEN_BYTES: usize = 32;

/// Why the control channel's credential could not be made, found or read.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no OS randomness for the control token: {0}")]
    Random(getrandom::Error),
    #[error("cannot find the checkout of {0}: no ancestor directory holds the workspace Cargo.toml (run the local-api that cargo built in its checkout)")]
    NoCheckout(PathBuf),
    #[error("cannot find this program's own path: {0}")]
    NoExe(std::io::Error),
    #[error("the control token file {path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
    #[error("the control token file {0} does not hold a token")]
    Malformed(PathBuf),
}

/// The control route's credential. Never printed: its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct ControlToken(String);

impl std::fmt::Debug for ControlToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlToken(..)")
    }
}

impl ControlToken {
    /// A fresh token: [`TOKEN_BYTES`] from the OS generator, as lowercase hex.
    pub fn generate() -> Result<Self, ControlError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes).map_err(ControlError::Random)?;
        Ok(Self(data_encoding::HEXLOWER.encode(&bytes)))
    }

    /// A token as the file holds it (surrounding whitespace ignored); `None` unless it has a
    /// generated token's form.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        (text.len() == TOKEN_BYTES * 2 && text.bytes().all(|b| b.is_ascii_hexdigit())).then(|| Self(text.to_ascii_lowercase()))
    }

    /// The token, for the header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether a presented header value is this token. Constant time in the value's bytes, so
    /// that timing tells a caller nothing about how much of a guess was right.
    pub fn matches(&self, presented: Option<&[u8]>) -> bool {
        let Some(presented) = presented else { return false };
        // Lengths may differ without leaking anything: every token has the same length.
        presented.len() == self.0.len() && bool::from(presented.ct_eq(self.0.as_bytes()))
    }
}

/// The checkout a binary belongs to: the nearest ancestor of its path whose `Cargo.toml` is the
/// workspace's (`target/debug/local-api` → the checkout).
pub fn checkout_of(exe: &Path) -> Option<PathBuf> {
    exe.ancestors()
        .skip(1)
        .find(|dir| std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|text| text.lines().any(|line| line.trim() == "[workspace]")))
        .map(Path::to_path_buf)
}

/// The checkout of the running binary (never the working directory).
pub fn checkout() -> Result<PathBuf, ControlError> {
    let exe = std::env::current_exe().map_err(ControlError::NoExe)?;
    // A symlinked binary belongs to the checkout it points into.
    let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
    checkout_of(&exe).ok_or(ControlError::NoCheckout(exe))
}

/// Where the local API on `port` keeps its token, under `checkout`.
pub fn token_path(checkout: &Path, port: u16) -> PathBuf {
    checkout.join(".cache").join("run").join(format!("local-api-{port}.token"))
}

/// The port a serve lease's owner names (`serve@127.0.0.1:3000`).
pub fn lease_port(owner: &str) -> Option<u16> {
    let address: std::net::SocketAddr = owner.strip_prefix("serve@")?.parse().ok()?;
    Some(address.port())
}

/// A written token file; dropping it removes the file.
#[derive(Debug)]
pub struct TokenFile {
    path: PathBuf,
}

impl TokenFile {
    /// Writes `token` for the local API on `port`. The file is made afresh with mode 0600 and
    /// renamed into place, so that a reader never sees it half-written and a stale file of a
    /// killed server (or one with a wider mode) is replaced, not reused.
    pub fn write(checkout: &Path, port: u16, token: &ControlToken) -> Result<Self, ControlError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = token_path(checkout, port);
        let at = |source| ControlError::File { path: path.clone(), source };
        let dir = path.parent().expect("the token path has a directory");
        std::fs::create_dir_all(dir).map_err(at)?;
        let staged = dir.join(format!(".local-api-{port}.token.{}", std::process::id()));
        let _ = std::fs::remove_file(&staged);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&staged)
            .and_then(|mut file| file.write_all(token.expose().as_bytes()).and_then(|()| file.sync_all()))
            .and_then(|()| std::fs::rename(&staged, &path));
        if let Err(source) = written {
            let _ = std::fs::remove_file(&staged);
            return Err(at(source));
        }
        Ok(Self { path })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_file(&self.path) {
            if error.kind() != std::io::ErrorKind::NotFound {
                eprintln!("could not remove the control token file {}: {error}", self.path.display());
            }
        }
    }
}

/// Reads the token of the local API on `port`.
pub fn read_token(checkout: &Path, port: u16) -> Result<ControlToken, ControlError> {
    let path = token_path(checkout, port);
    let text = std::fs::read_to_string(&path).map_err(|source| ControlError::File { path: path.clone(), source })?;
    ControlToken::parse(&text).ok_or(ControlError::Malformed(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_256_random_bits_that_only_itself_matches() {
        let (a, b) = (ControlToken::generate().unwrap(), ControlToken::generate().unwrap());
        assert_eq!(a.expose().len(), 64);
        assert_ne!(a, b);
        assert!(a.matches(Some(a.expose().as_bytes())));
        assert!(!a.matches(Some(b.expose().as_bytes())));
        assert!(!a.matches(Some(&a.expose().as_bytes()[..63])));
        assert!(!a.matches(Some(b"")));
        assert!(!a.matches(None));
        assert_eq!(format!("{a:?}"), "ControlToken(..)", "never printed");
        assert_eq!(ControlToken::parse(&format!("{}\n", a.expose())), Some(a));
        assert_eq!(ControlToken::parse("not a token"), None);
    }

    #[test]
    fn the_checkout_is_found_from_the_binary_s_path() {
        let root = checkout().unwrap();
        assert!(root.join("scripts").join("lib.sh").is_file(), "{}", root.display());
        assert_eq!(checkout_of(&root.join("target").join("debug").join("local-api")), Some(root.clone()));
        // A member crate's Cargo.toml is not the workspace's.
        assert_eq!(checkout_of(&root.join("tools").join("local-api").join("src").join("x")), Some(root));
    }

    #[test]
    fn the_lease_names_the_port() {
        assert_eq!(lease_port("serve@127.0.0.1:3117"), Some(3117));
        assert_eq!(lease_port("127.0.0.1:3117"), None);
        assert_eq!(lease_port("serve@nowhere"), None);
    }

    #[test]
    fn the_token_file_is_private_and_goes_with_its_holder() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("local-api-control-{}", mongodb::bson::oid::ObjectId::new().to_hex()));
        let token = ControlToken::generate().unwrap();
        // A stale file of a killed server, readable by all, is replaced.
        std::fs::create_dir_all(dir.join(".cache/run")).unwrap();
        std::fs::write(token_path(&dir, 4000), "stale").unwrap();
        std::fs::set_permissions(token_path(&dir, 4000), std::fs::Permissions::from_mode(0o644)).unwrap();
        let file = TokenFile::write(&dir, 4000, &token).unwrap();
        let mode = std::fs::metadata(file.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_token(&dir, 4000).unwrap(), token);
        drop(file);
        assert!(!token_path(&dir, 4000).exists());
        assert!(matches!(read_token(&dir, 4000), Err(ControlError::File { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
