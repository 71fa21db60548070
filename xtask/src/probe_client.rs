//! What the benchmark's probes talk through while ingest runs: one HTTP/1.1
//! connection kept alive, and one psql session. Starting a curl or psql process for
//! each request cost the two shared cores more than the probes measured (a tenth of
//! the machine, charged to the run being measured).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{Context, bail};

/// One kept-alive HTTP/1.1 connection to the server.
pub(crate) struct HttpConnection {
    address: String,
    reader: Option<BufReader<TcpStream>>,
}

impl HttpConnection {
    pub(crate) fn new(address: &str) -> Self {
        Self {
            address: address.to_owned(),
            reader: None,
        }
    }

    /// Sends one request and reads its answer: the status and the body. Reconnects
    /// once when the kept connection was closed by the server.
    pub(crate) fn request(
        &mut self,
        method: &str,
        path: &str,
        json_body: Option<&str>,
    ) -> anyhow::Result<(u16, String)> {
        match self.try_request(method, path, json_body) {
            Ok(answer) => Ok(answer),
            Err(_) => {
                self.reader = None;
                self.try_request(method, path, json_body)
            }
        }
    }

    fn try_request(
        &mut self,
        method: &str,
        path: &str,
        json_body: Option<&str>,
    ) -> anyhow::Result<(u16, String)> {
        if self.reader.is_none() {
            let stream = TcpStream::connect(&self.address)
                .with_context(|| format!("cannot connect to {}", self.address))?;
            stream.set_nodelay(true)?;
            self.reader = Some(BufReader::new(stream));
        }
        let reader = self.reader.as_mut().context("no connection")?;
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.address);
        if let Some(body) = json_body {
            request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        } else {
            request.push_str("\r\n");
        }
        reader.get_mut().write_all(request.as_bytes())?;
        let mut status_line = String::new();
        if reader.read_line(&mut status_line)? == 0 {
            bail!("the server closed the connection");
        }
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("not an HTTP status line: {status_line:?}"))?;
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().context("a bad Content-Length")?;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// One psql session that answers one-value queries, one line each.
pub(crate) struct PsqlSession {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl PsqlSession {
    pub(crate) fn open(dsn: &str) -> anyhow::Result<Self> {
        let mut child = Command::new("psql")
            .args(["-qtAX", "-v", "ON_ERROR_STOP=1", dsn])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot run psql")?;
        let input = child.stdin.take().context("psql has no input")?;
        let output = BufReader::new(child.stdout.take().context("psql has no output")?);
        Ok(Self {
            child,
            input,
            output,
        })
    }

    /// The one value `query` answers (one row, one column).
    pub(crate) fn value(&mut self, query: &str) -> anyhow::Result<String> {
        writeln!(self.input, "{query};")?;
        self.input.flush()?;
        let mut line = String::new();
        if self.output.read_line(&mut line)? == 0 {
            bail!("psql ended while answering {query}");
        }
        Ok(line.trim().to_owned())
    }
}

impl Drop for PsqlSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
