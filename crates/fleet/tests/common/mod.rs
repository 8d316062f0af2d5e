//! Real `nats-server`s for the tests: one per test (or a 3-node cluster),
//! on free loopback ports, each with its own temporary store directory,
//! killed when the guard drops. Without `nats-server` the tests skip with
//! a message, except under `CI=true`, where that is a failure.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server binary, or `None` (after saying so) when the test must skip.
pub fn nats_server() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
            .map(|p| p.join("nats-server"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "nats-server is not installed, and CI=true: the fleet tests must run (apt-get install nats-server)"
        );
        eprintln!("SKIPPED: nats-server is not installed (apt-get install nats-server)");
    }
    found
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn wait_for_port(port: u16, within: Duration) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < within,
            "nats-server did not listen on {port} within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One server process; killed (and waited for) on drop.
pub struct Server {
    pub bin: PathBuf,
    pub port: u16,
    pub store: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl Server {
    /// A single JetStream server with a fresh store under `root`.
    pub fn single(bin: &Path, root: &Path) -> Server {
        Server::started(bin, root, |port, store| {
            vec![
                "-js".into(),
                "-sd".into(),
                store.display().to_string(),
                "-p".into(),
                port.to_string(),
                "-a".into(),
                "127.0.0.1".into(),
            ]
        })
    }

    /// A single JetStream server whose one (default) user may publish to
    /// any subject but those in `deny` (e.g. `$JS.API.CONSUMER.CREATE.>`).
    pub fn denying(bin: &Path, root: &Path, deny: &[&str]) -> Server {
        Server::started(bin, root, |port, store| {
            let deny: Vec<String> = deny.iter().map(|d| format!("{d:?}")).collect();
            let config = format!(
                "listen: 127.0.0.1:{port}\njetstream {{ store_dir: {:?} }}\n\
                 accounts {{ A: {{ jetstream: enabled, users: [ {{ user: ship, password: ship, \
                 permissions: {{ publish: {{ allow: [\">\"], deny: [{}] }} }} }} ] }} }}\n\
                 no_auth_user: ship\n",
                store.display().to_string(),
                deny.join(", ")
            );
            let path = root.join(format!("nats-{port}.conf"));
            std::fs::write(&path, config).unwrap();
            vec!["-c".into(), path.display().to_string()]
        })
    }

    /// A server on a free port with a fresh store under `root`, started
    /// with the arguments `args` gives for them.
    fn started(bin: &Path, root: &Path, args: impl FnOnce(u16, &Path) -> Vec<String>) -> Server {
        let port = free_port();
        let store = root.join(format!("nats-{port}"));
        std::fs::create_dir_all(&store).unwrap();
        let mut s = Server {
            bin: bin.to_path_buf(),
            port,
            args: args(port, &store),
            store,
            child: None,
        };
        s.start();
        s
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Start it (again, on the same port and store).
    pub fn start(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new(&self.bin)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(15));
    }

    /// SIGKILL it and wait for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Freeze it (SIGSTOP) or thaw it (SIGCONT): its connections stay
    /// open and nothing is answered meanwhile.
    pub fn freeze(&self, frozen: bool) {
        if let Some(child) = &self.child {
            let signal = if frozen { "-STOP" } else { "-CONT" };
            let status = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .expect("kill(1)");
            assert!(status.success(), "kill {signal} {}", child.id());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A 3-node JetStream cluster on loopback ports; each node its own store.
pub struct Cluster {
    pub nodes: Vec<Server>,
}

impl Cluster {
    pub fn start(bin: &Path, root: &Path) -> Cluster {
        let client: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let store = root.join(format!("node{i}"));
            std::fs::create_dir_all(&store).unwrap();
            let others: Vec<String> = (0..3)
                .filter(|&j| j != i)
                .map(|j| format!("nats-route://127.0.0.1:{}", routes[j]))
                .collect();
            let config = format!(
                "server_name: n{i}\nlisten: 127.0.0.1:{}\njetstream {{ store_dir: \"{}\" }}\n\
                 cluster {{\n  name: logbook\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                client[i],
                store.display(),
                routes[i],
                others.join(", ")
            );
            let path = root.join(format!("node{i}.conf"));
            std::fs::write(&path, config).unwrap();
            let s = Server {
                bin: bin.to_path_buf(),
                port: client[i],
                store,
                args: vec!["-c".into(), path.display().to_string()],
                child: None,
            };
            nodes.push(s);
        }
        for n in &mut nodes {
            let child = Command::new(&n.bin)
                .args(&n.args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start nats-server");
            n.child = Some(child);
        }
        for n in &nodes {
            wait_for_port(n.port, Duration::from_secs(15));
        }
        Cluster { nodes }
    }
}

/// Run `f` on a fresh multi-thread runtime, failing the test after
/// `limit`.
pub fn run<F: Future>(limit: Duration, f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(limit, f)
            .await
            .unwrap_or_else(|_| panic!("the test did not finish within {limit:?}"))
    })
}

/// A small tmpfs, unmounted (lazily) on drop.
pub struct Tmpfs(pub PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Mount a tmpfs of `size` (as `mount -o size=`, e.g. `2m`) on `mnt`,
/// which is created. Needs root: elsewhere `None` (after saying so), except
/// under `CI=true` (CI runs as root), where a refused mount is a failure.
pub fn tmpfs(mnt: &Path, size: &str) -> Option<Tmpfs> {
    std::fs::create_dir_all(mnt).unwrap();
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(mnt)
        .output();
    match out {
        Ok(out) if out.status.success() => Some(Tmpfs(mnt.to_path_buf())),
        other => {
            let why = match other {
                Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                Err(e) => e.to_string(),
            };
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true: a tmpfs must be mounted for this test (CI runs as root), but: {why}"
            );
            eprintln!("SKIPPED: cannot mount a tmpfs (needs root): {why}");
            None
        }
    }
}

/// Fill the file system of `dir` with a ballast file until it is full,
/// then give back `leave` bytes. Returns the ballast's path (remove it to
/// free the space).
pub fn fill_leaving(dir: &Path, leave: u64) -> PathBuf {
    use std::io::Write;
    let path = dir.join("ballast");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xa5u8; 64 << 10];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    let len = file.metadata().unwrap().len();
    file.set_len(len.saturating_sub(leave)).unwrap();
    file.sync_all().unwrap();
    path
}
