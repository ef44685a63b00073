//! Helpers of the plugin host tests: the test components, grants, loopback HTTP servers and a
//! tracing subscriber that captures every log line in memory.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tgp::plugins::{Grants, Limits, SecretValue};

pub fn component(package: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("TGP_TEST_PLUGIN_DIR"))
        .join(format!("{}.wasm", package.replace('-', "_")));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub fn hostile() -> Vec<u8> {
    component("tgp-test-plugin-hostile")
}

/// The SDK README's example (`sdk/examples/minimal.rs`), built by the build script.
pub fn sdk_example() -> Vec<u8> {
    let path = PathBuf::from(env!("TGP_TEST_PLUGIN_DIR"))
        .join("examples")
        .join("minimal.wasm");
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub fn grants(mode: &str) -> Grants {
    Grants {
        provider_name: format!("hostile-{mode}"),
        config: BTreeMap::from([("mode".to_owned(), mode.to_owned())]),
        limits: Limits {
            call_timeout: Duration::from_secs(10),
            ..Limits::default()
        },
        ..Grants::default()
    }
}

/// Points the hostile plugin at `target` and grants `allowed`; the plugin declares exactly its
/// grants (so it loads), whatever `target` is.
pub fn with_target(mut g: Grants, target: &str, allowed: &[&str]) -> Grants {
    g.config.insert("target".into(), target.into());
    g.allowed_hosts = allowed.iter().map(|s| s.to_string()).collect();
    declaring(g, allowed)
}

/// Makes the hostile plugin declare `hosts` (verbatim) in `info().capabilities.hosts`.
pub fn declaring(mut g: Grants, hosts: &[&str]) -> Grants {
    g.config.insert("declare_hosts".into(), hosts.join(","));
    g
}

/// Grants `allowed` without changing what the plugin declares or calls.
pub fn granting(mut g: Grants, allowed: &[&str]) -> Grants {
    g.allowed_hosts = allowed.iter().map(|s| s.to_string()).collect();
    g
}

pub fn with_secret(mut g: Grants, name: &str, value: &str) -> Grants {
    g.secrets.insert(name.into(), SecretValue::new(value));
    g
}

/// The code generator's own trace records (every compile emits hundreds of megabytes of them)
/// are kept at info: everything else, the host's and the guests' lines included, at trace.
const LOG_FILTER: &str = "trace,cranelift=info,regalloc2=info,wasmtime=info,wasmparser=info";

/// Every log line of the test process, captured from the first call on.
pub fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(LOG_FILTER))
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .init();
        buf
    })
    .clone()
}

pub fn logs_text() -> String {
    let logs = logs();
    let bytes = logs.lock().map(|b| b.clone()).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn read_head(stream: &mut TcpStream) -> String {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A loopback server that answers every request with its request head as the body, and echoes
/// the `Authorization` header back in `x-echo-authorization`. Records every head it saw.
pub struct EchoServer {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<String>>>,
}

pub fn echo_server() -> EchoServer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo server");
    let port = listener.local_addr().expect("local addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let head = read_head(&mut stream);
            let auth = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("authorization: ")
                        .or_else(|| l.strip_prefix("Authorization: "))
                })
                .unwrap_or("")
                .to_owned();
            if let Ok(mut s) = record.lock() {
                s.push(head.clone());
            }
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-echo-authorization: {auth}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{head}",
                head.len()
            );
            let _ = stream.write_all(resp.as_bytes());
        }
    });
    EchoServer { port, seen }
}

/// A loopback server that answers with `size` bytes of body, without a content-length (so
/// the host must stream and stop at its cap). Returns the port.
pub fn big_server(size: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind big server");
    let port = listener.local_addr().expect("local addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let _ = read_head(&mut stream);
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\nconnection: close\r\n\r\n");
                let chunk = vec![b'x'; 64 * 1024];
                let mut sent = 0;
                while sent < size {
                    if stream.write_all(&chunk).is_err() {
                        break;
                    }
                    sent += chunk.len();
                }
            });
        }
    });
    port
}

/// A listener nobody should ever connect to.
pub struct Tripwire {
    listener: TcpListener,
    pub port: u16,
}

pub fn tripwire() -> Tripwire {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind tripwire");
    let port = listener.local_addr().expect("local addr").port();
    Tripwire { listener, port }
}

impl Tripwire {
    /// Whether a connection is waiting (non-blocking).
    pub fn was_touched(&self) -> bool {
        self.listener.set_nonblocking(true).expect("nonblocking");
        match self.listener.accept() {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(e) => panic!("accept failed: {e}"),
        }
    }
}

/// A loopback server answering every request with a `302` to `location`. Returns the port.
pub fn redirect_server(location: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind redirect server");
    let port = listener.local_addr().expect("local addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = read_head(&mut stream);
            let resp = format!(
                "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = stream.write_all(resp.as_bytes());
        }
    });
    port
}
