//! Real etcd servers for tests (feature `testing`): [`EtcdProcess`] runs one etcd on free
//! loopback ports with its own temporary data directory, [`EtcdCluster`] runs several as one
//! cluster. Both kill their processes and remove their directories when dropped.
//!
//! A test that needs etcd starts it here and fails, saying how to install it, when the binary is
//! missing: it never skips.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The etcd binary run when `SHARDMQ_ETCD` is not set (Debian's `etcd-server` installs it here
/// and on the PATH).
pub const ETCD_BINARY_DEFAULT: &str = "etcd";
/// Environment variable naming another etcd binary.
pub const ETCD_BINARY_ENV: &str = "SHARDMQ_ETCD";
/// How long a started (or restarted) etcd may take to answer `/health` with `true`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause between two `/health` probes while waiting for readiness.
const READY_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Timeout of one `/health` probe (connect, write and read each).
const HEALTH_PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How many trailing bytes of etcd's log an error quotes.
const LOG_TAIL_BYTES: usize = 2000;
/// Largest cluster [`EtcdCluster::start`] builds (etcd clusters are small by design).
pub const CLUSTER_MEMBERS_MAX: usize = 7;

/// Why an etcd for a test could not be run.
#[derive(Debug, thiserror::Error)]
pub enum TestingError {
    #[error("cannot run `{binary}` ({source}): the tests need a real etcd; install it with `apt-get install etcd-server` (or set {ETCD_BINARY_ENV})")]
    NotInstalled { binary: String, source: std::io::Error },
    #[error("etcd test setup: {context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("etcd on {endpoint} was not healthy within {READY_TIMEOUT:?}; its log ends with:\n{log_tail}")]
    NotReady { endpoint: String, log_tail: String },
    #[error("etcd cluster of {members} members: between 1 and {CLUSTER_MEMBERS_MAX} members")]
    ClusterSize { members: usize },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestingError {
    let context = context.into();
    move |source| TestingError::Io { context, source }
}

/// One etcd member's fixed identity: restarting it reuses the name, ports and data directory.
#[derive(Debug, Clone)]
struct MemberSpec {
    name: String,
    client: SocketAddr,
    peer: SocketAddr,
    /// Holds `data/` (etcd's data directory) and `etcd.log`.
    directory: PathBuf,
}

impl MemberSpec {
    fn client_url(&self) -> String {
        format!("http://{}", self.client)
    }

    fn peer_url(&self) -> String {
        format!("http://{}", self.peer)
    }

    fn log_path(&self) -> PathBuf {
        self.directory.join("etcd.log")
    }
}

/// One etcd process on loopback. Killed (and its directory removed) on drop.
#[derive(Debug)]
pub struct EtcdProcess {
    spec: MemberSpec,
    initial_cluster: String,
    cluster_token: String,
    child: Option<Child>,
    /// The directory this process removes on drop (a cluster's members leave it to the cluster).
    remove_on_drop: Option<PathBuf>,
}

impl EtcdProcess {
    /// Starts a single-member etcd on free loopback ports and waits until it is healthy.
    pub fn start() -> Result<EtcdProcess, TestingError> {
        let mut cluster = EtcdCluster::start(1)?;
        let mut process = cluster.members.remove(0);
        // The cluster's directory is the member's parent: the process now removes it.
        process.remove_on_drop = Some(std::mem::take(&mut cluster.directory));
        Ok(process)
    }

    /// `http://127.0.0.1:<port>`, for `ControlConfig::endpoints`.
    pub fn endpoint(&self) -> String {
        self.spec.client_url()
    }

    /// The client address.
    pub fn client_addr(&self) -> SocketAddr {
        self.spec.client
    }

    /// Whether the process is running (started and not stopped).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The process id while it runs (to pause it with SIGSTOP, say).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// Where the process writes its log.
    pub fn log(&self) -> PathBuf {
        self.spec.log_path()
    }

    /// Kills the process (SIGKILL: a crash, not a clean stop) and waits for it to exit. Its
    /// data stays, for [`EtcdProcess::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // An error here means the process already exited, which is what we want.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same ports with the same data, and waits until healthy.
    pub fn restart(&mut self) -> Result<(), TestingError> {
        self.stop();
        self.spawn()?;
        self.wait_ready()
    }

    fn spawn(&mut self) -> Result<(), TestingError> {
        let binary =
            std::env::var(ETCD_BINARY_ENV).unwrap_or_else(|_| ETCD_BINARY_DEFAULT.to_owned());
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.spec.log_path())
            .map_err(io_error(format!("open {}", self.spec.log_path().display())))?;
        let log_err = log.try_clone().map_err(io_error("duplicate the etcd log file"))?;
        let data = self.spec.directory.join("data");
        let child = Command::new(&binary)
            .arg("--name")
            .arg(&self.spec.name)
            .arg("--data-dir")
            .arg(&data)
            .arg("--listen-client-urls")
            .arg(self.spec.client_url())
            .arg("--advertise-client-urls")
            .arg(self.spec.client_url())
            .arg("--listen-peer-urls")
            .arg(self.spec.peer_url())
            .arg("--initial-advertise-peer-urls")
            .arg(self.spec.peer_url())
            .arg("--initial-cluster")
            .arg(&self.initial_cluster)
            .arg("--initial-cluster-token")
            .arg(&self.cluster_token)
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--logger")
            .arg("zap")
            .arg("--log-level")
            .arg("warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|source| TestingError::NotInstalled { binary, source })?;
        self.child = Some(child);
        Ok(())
    }

    fn wait_ready(&mut self) -> Result<(), TestingError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if healthy(self.spec.client) {
                return Ok(());
            }
            let exited = match self.child.as_mut() {
                Some(child) => matches!(child.try_wait(), Ok(Some(_))),
                None => true,
            };
            if exited || Instant::now() >= deadline {
                return Err(TestingError::NotReady {
                    endpoint: self.endpoint(),
                    log_tail: log_tail(&self.spec.log_path()),
                });
            }
            thread::sleep(READY_POLL_INTERVAL);
        }
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        self.stop();
        if let Some(directory) = self.remove_on_drop.take() {
            let _ = fs::remove_dir_all(directory);
        }
    }
}

/// Several etcd processes forming one cluster on loopback. Killed and removed on drop.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<EtcdProcess>,
    /// Parent of every member's directory; removed on drop.
    directory: PathBuf,
}

impl EtcdCluster {
    /// Starts `members` etcd processes as one cluster and waits until every one is healthy.
    pub fn start(members: usize) -> Result<EtcdCluster, TestingError> {
        if members == 0 || members > CLUSTER_MEMBERS_MAX {
            return Err(TestingError::ClusterSize { members });
        }
        let directory = unique_directory()?;
        // Hold every listener until all ports are chosen so no two members get the same one.
        let mut listeners = Vec::with_capacity(members * 2);
        for _ in 0..members * 2 {
            listeners.push(
                TcpListener::bind("127.0.0.1:0").map_err(io_error("pick a free loopback port"))?,
            );
        }
        let mut specs = Vec::with_capacity(members);
        for (index, pair) in listeners.chunks(2).enumerate() {
            let addr = |listener: &TcpListener| {
                listener.local_addr().map_err(io_error("read a listener's address"))
            };
            let spec = MemberSpec {
                name: format!("member{index}"),
                client: addr(&pair[0])?,
                peer: addr(&pair[1])?,
                directory: directory.join(format!("member{index}")),
            };
            fs::create_dir_all(&spec.directory)
                .map_err(io_error(format!("create {}", spec.directory.display())))?;
            specs.push(spec);
        }
        drop(listeners);
        let initial_cluster = specs
            .iter()
            .map(|spec| format!("{}={}", spec.name, spec.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let cluster_token = directory
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "shardmq-test".to_owned());
        let mut cluster = EtcdCluster { members: Vec::with_capacity(members), directory };
        for spec in specs {
            let mut process = EtcdProcess {
                spec,
                initial_cluster: initial_cluster.clone(),
                cluster_token: cluster_token.clone(),
                child: None,
                remove_on_drop: None,
            };
            process.spawn()?;
            cluster.members.push(process);
        }
        // Members of a new cluster become healthy only once a quorum is up, so wait after all
        // are spawned.
        for process in &mut cluster.members {
            process.wait_ready()?;
        }
        Ok(cluster)
    }

    /// Every member's client URL, for `ControlConfig::endpoints`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(EtcdProcess::endpoint).collect()
    }

    /// How many members the cluster was started with.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: a cluster has at least one member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Kills member `index` (SIGKILL). Panics when `index` is out of range (a test's mistake).
    pub fn kill(&mut self, index: usize) {
        self.members[index].stop();
    }

    /// Restarts member `index` with its data and waits until it is healthy.
    pub fn restart(&mut self, index: usize) -> Result<(), TestingError> {
        self.members[index].restart()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for process in &mut self.members {
            process.stop();
        }
        if !self.directory.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.directory);
        }
    }
}

/// A fresh directory under the system's temporary directory.
fn unique_directory() -> Result<PathBuf, TestingError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    let directory = std::env::temp_dir().join(format!(
        "shardmq-etcd-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&directory).map_err(io_error(format!("create {}", directory.display())))?;
    Ok(directory)
}

/// Whether etcd on `client` answers `GET /health` with `"health":"true"` (it does once it has
/// a leader and can serve requests).
fn healthy(client: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&client, HEALTH_PROBE_TIMEOUT) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(HEALTH_PROBE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(HEALTH_PROBE_TIMEOUT));
    let request = format!("GET /health HTTP/1.0\r\nHost: {client}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let _ = stream.shutdown(Shutdown::Write);
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.contains("\"health\":\"true\"")
}

fn log_tail(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(LOG_TAIL_BYTES);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}
