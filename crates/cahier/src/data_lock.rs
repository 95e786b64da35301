//! The lock of a lab's data folder: `DIR/cahier.lock`, an advisory lock of the operating
//! system (`flock` on Unix, `LockFileEx` on Windows) that the kernel drops when its process
//! ends, however it ends, so a crash never leaves a stale lock behind.
//!
//! `cahier serve` and the admin commands that open the lab (backup, verify, sweep, migrate,
//! user, apikey, seed) hold it *shared*: any number of them run at once, as before.
//! `cahier restore` holds it *exclusive*: it is refused while any of them runs, and they are
//! refused while it runs. The file itself is never removed (removing a lock file others may be
//! waiting on would let two holders in), and holds nothing.
//!
//! A process that does not take the lock (a server of a version from before it, the `sqlite3`
//! shell) is not seen here; `cahier restore` also asks SQLite whether anyone has the database
//! open (`cahier_store::backup::settle_current`).

use anyhow::Context;
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

/// Name of the lock file in the data folder.
pub const LOCK_FILE: &str = "cahier.lock";

/// A held lock of a data folder; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DataLock {
    _file: File,
    path: PathBuf,
}

impl DataLock {
    /// Takes the lock shared (a server or a command using the lab), creating the folder and
    /// the file if needed; refused while a restore holds it.
    pub fn shared(data: &Path) -> anyhow::Result<Self> {
        let (file, path) = open(data)?;
        match file.try_lock_shared() {
            Ok(()) => Ok(Self { _file: file, path }),
            Err(TryLockError::WouldBlock) => anyhow::bail!(
                "{} is being restored (cahier restore holds {}); wait until it ends",
                data.display(),
                path.display()
            ),
            Err(TryLockError::Error(error)) => {
                Err(error).with_context(|| format!("locking {}", path.display()))
            }
        }
    }

    /// Takes the lock exclusive (a restore), creating the folder and the file if needed;
    /// refused while a server or another command holds it.
    pub fn exclusive(data: &Path) -> anyhow::Result<Self> {
        let (file, path) = open(data)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file, path }),
            Err(TryLockError::WouldBlock) => anyhow::bail!(
                "a Cahier server or command is using {} (it holds {}): stop the server first",
                data.display(),
                path.display()
            ),
            Err(TryLockError::Error(error)) => {
                Err(error).with_context(|| format!("locking {}", path.display()))
            }
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn open(data: &Path) -> anyhow::Result<(File, PathBuf)> {
    std::fs::create_dir_all(data)
        .with_context(|| format!("creating the data directory {}", data.display()))?;
    let path = data.join(LOCK_FILE);
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    Ok((file, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_share_the_lock_and_a_restore_excludes_them() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataLock::shared(dir.path()).unwrap();
        let second = DataLock::shared(dir.path()).unwrap();
        let refused = DataLock::exclusive(dir.path()).unwrap_err();
        assert!(
            refused.to_string().contains("stop the server first"),
            "{refused}"
        );
        drop(first);
        assert!(DataLock::exclusive(dir.path()).is_err());
        drop(second);
        let restore = DataLock::exclusive(dir.path()).unwrap();
        let refused = DataLock::shared(dir.path()).unwrap_err();
        assert!(refused.to_string().contains("being restored"), "{refused}");
        assert_eq!(restore.path(), dir.path().join(LOCK_FILE));
        drop(restore);
        DataLock::shared(dir.path()).unwrap();
    }
}
