//! Python tools from PyPI for tests (eLabFTW's client, schemathesis, RO-Crate validators),
//! each in its own virtualenv under `~/.cache/cahier-test-venvs`, made once and reused by later
//! runs (CI keeps `~/.cache`). Needs `python3` with `venv` and PyPI; without them the test
//! fails and says why.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs a command; panics with its output if it fails. Returns standard output.
pub fn run(what: &str, command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: could not start: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
}

/// The `bin` folder of a virtualenv named `name` holding `packages` (pip requirement strings),
/// created if missing. Blocking: call it from `spawn_blocking` in async tests.
pub fn venv(name: &str, packages: &[&str]) -> PathBuf {
    let root = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache/cahier-test-venvs");
    std::fs::create_dir_all(&root).expect("venv cache folder");
    // The name carries the package list, so a changed list makes a new venv.
    let key = format!("{name}-{:016x}", fnv(&packages.join(" ")));
    let dir = root.join(&key);
    if dir.join("ready").exists() {
        return dir.join("bin");
    }
    // Built aside and renamed into place, so a run cut short never leaves a half venv in use,
    // and two test processes building at once do not collide.
    let building = root.join(format!("{key}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    run(
        "python3 -m venv",
        Command::new("python3").arg("-m").arg("venv").arg(&building),
    );
    let mut pip = Command::new(building.join("bin/python"));
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--timeout",
        "30",
        "--retries",
        "2",
    ]);
    pip.args(packages);
    run(
        &format!("pip install {} (is PyPI reachable?)", packages.join(" ")),
        &mut pip,
    );
    std::fs::write(building.join("ready"), b"").expect("mark venv ready");
    // A venv's scripts name their interpreter by absolute path: make it again in place.
    if std::fs::rename(&building, &dir).is_err() {
        // Another process won the race; use its venv.
        let _ = std::fs::remove_dir_all(&building);
        assert!(dir.join("ready").exists(), "venv {key} could not be made");
        return dir.join("bin");
    }
    fix_paths(&building, &dir);
    dir.join("bin")
}

/// Rewrites the absolute paths pip wrote into the venv's scripts after a move.
fn fix_paths(from: &Path, to: &Path) {
    let (from, to) = (from.to_string_lossy(), to.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(Path::new(to.as_ref()).join("bin")) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if let Ok(text) = std::fs::read_to_string(&path)
            && text.contains(from.as_ref())
        {
            let _ = std::fs::write(&path, text.replace(from.as_ref(), to.as_ref()));
        }
    }
    let cfg = Path::new(to.as_ref()).join("pyvenv.cfg");
    if let Ok(text) = std::fs::read_to_string(&cfg) {
        let _ = std::fs::write(&cfg, text.replace(from.as_ref(), to.as_ref()));
    }
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
