//! Real `redis-server` processes for tests: one node, or a three-node cluster, on free
//! loopback ports. A server is killed when its handle drops, and a watchdog shell kills
//! it too if the test process dies first (a panic in another thread, an abort), so no
//! test leaves a Redis behind. Tests sharing a server use [`unique_prefix`] keys.
//!
//! The calls block briefly (they run `redis-cli`): use them from multi-threaded Tokio
//! tests so the stores' background tasks keep running meanwhile.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A key prefix no other test (or test process) uses.
pub fn unique_prefix(test: &str) -> String {
    format!(
        "t{}-{}-{test}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Is `redis-server` installed? `make test` installs it (`deps-redis`).
pub fn require_redis() {
    let ok = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "redis-server is missing: run `make test` (installs it) or `apt-get install redis-server`"
    );
}

/// A loopback port that is free, and whose cluster bus port (+10000) is free too.
fn free_port() -> u16 {
    for _ in 0..200 {
        let port: u16 = rand::random_range(20_000..40_000);
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10_000) {
            return port;
        }
    }
    panic!("no free loopback port pair found");
}

/// One `redis-server` process.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    extra: Vec<String>,
}

impl RedisServer {
    /// A server that keeps nothing on disk.
    pub fn start() -> RedisServer {
        RedisServer::launch(&["--save", "", "--appendonly", "no"])
    }

    /// A server that writes its data on [`RedisServer::stop_saving`] and loads it again
    /// on [`RedisServer::restart`].
    pub fn start_persistent() -> RedisServer {
        RedisServer::launch(&[
            "--save",
            "",
            "--appendonly",
            "no",
            "--dbfilename",
            "dump.rdb",
        ])
    }

    fn cluster_node() -> RedisServer {
        RedisServer::launch(&[
            "--save",
            "",
            "--appendonly",
            "no",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "5000",
        ])
    }

    fn launch(extra: &[&str]) -> RedisServer {
        require_redis();
        for _ in 0..5 {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!(
                "herenow-redis-{}-{port}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let mut server = RedisServer {
                port,
                dir,
                child: None,
                extra: extra.iter().map(|s| s.to_string()).collect(),
            };
            if server.spawn() {
                return server;
            }
            // Someone took the port meanwhile: another one.
        }
        panic!("redis-server did not start");
    }

    /// Start the process on this server's port and directory; wait until it answers.
    fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--protected-mode", "no", "--loglevel", "warning"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let pid = child.id();
        // Kill it when this test process goes away without running destructors.
        let watchdog = format!(
            "while kill -0 {me} 2>/dev/null && kill -0 {pid} 2>/dev/null; do sleep 0.5; done; kill -9 {pid} 2>/dev/null",
            me = std::process::id()
        );
        let _ = Command::new("sh")
            .args(["-c", &watchdog])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.cli(&["PING"]).trim() == "PONG" {
                return true;
            }
            if let Some(child) = &mut self.child {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    self.child = None;
                    return false;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Run `redis-cli` against this server; its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every key matching `pattern`, by SCAN.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        self.cli(&["--scan", "--pattern", pattern])
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }

    /// Drop every client connection (ours from redis-cli excepted).
    pub fn kill_clients(&self) {
        self.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
        self.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kill the process (SIGKILL): whatever it held is lost.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.dir.join("dump.rdb"));
    }

    /// Stop the process after writing its data to disk, as a restart that keeps data.
    pub fn stop_saving(&mut self) {
        self.cli(&["SHUTDOWN", "SAVE"]);
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same port, with whatever data it saved.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        for _ in 0..50 {
            if self.spawn() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("redis-server did not restart on port {}", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three primaries, no replicas, every slot assigned.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3).map(|_| RedisServer::cluster_node()).collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = RedisCluster { nodes };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cluster.is_ok() {
            assert!(Instant::now() < deadline, "the cluster never became ok");
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// Every node says the cluster is ok and knows all three.
    fn is_ok(&self) -> bool {
        self.nodes.iter().all(|n| {
            let info = n.cli(&["CLUSTER", "INFO"]);
            info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3")
        })
    }

    /// The seed nodes, comma-separated (as `REDIS_URL` takes them).
    pub fn url(&self) -> String {
        self.urls().join(",")
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Kill every node (SIGKILL): the data is lost, the cluster layout (nodes.conf) kept.
    pub fn kill_all(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }

    /// Start every node again and wait until the cluster is ok.
    pub fn restart_all(&mut self) {
        for node in &mut self.nodes {
            node.restart();
        }
        self.wait_ok();
    }

    /// Wait until every node says the cluster is ok (after a node restarted).
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.is_ok() {
            assert!(Instant::now() < deadline, "the cluster never recovered");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every key matching `pattern` on every node.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        self.nodes.iter().flat_map(|n| n.keys(pattern)).collect()
    }
}
