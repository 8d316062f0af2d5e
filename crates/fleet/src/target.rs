//! [`Target`]: which server, which stream, which subject prefix; and
//! connecting to it with every wait bounded.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::error::FleetError;

/// The stream's default name.
pub const DEFAULT_STREAM: &str = "LOGBOOK";
/// The default first token of every subject: `logbook.<log id>.<session>`.
pub const DEFAULT_PREFIX: &str = "logbook";

/// Where records go and come from: a NATS server, a JetStream stream and
/// the subject prefix of its records.
///
/// # Examples
///
/// ```
/// use logbook_fleet::Target;
///
/// let target = Target::parse("nats://127.0.0.1:4222")?.with_stream("FLEET");
/// assert_eq!(target.stream(), "FLEET");
/// assert_eq!(target.log_filter(uuid::Uuid::nil()), "logbook.00000000-0000-0000-0000-000000000000.*");
/// assert!(Target::parse("http://example.com").is_err());
/// // A cluster: any of its servers.
/// assert!(Target::parse("nats://10.0.0.1:4222,nats://10.0.0.2:4222").is_ok());
/// # Ok::<(), logbook_fleet::FleetError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    url: String,
    /// The servers of `url` (several for a cluster, comma-separated).
    servers: Vec<String>,
    stream: String,
    prefix: String,
    timeout: Duration,
}

impl Target {
    /// A target at `url` (`nats://HOST:PORT`, or several separated by
    /// commas: the servers of a cluster, any of which will do), stream
    /// [`DEFAULT_STREAM`], prefix [`DEFAULT_PREFIX`], 5 s per request.
    ///
    /// # Errors
    ///
    /// [`FleetError::BadUrl`] for anything but `nats://HOST[:PORT]`
    /// (comma-separated).
    pub fn parse(url: &str) -> Result<Target, FleetError> {
        let bad = |reason: &str| FleetError::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let mut servers = Vec::new();
        for one in url.split(',').map(str::trim) {
            let rest = one
                .strip_prefix("nats://")
                .ok_or_else(|| bad("it does not start with nats://"))?;
            let (host, port) = match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            };
            if host.is_empty() || host.contains(['/', '@', ' ']) {
                return Err(bad("no host, or a path or user in it"));
            }
            if let Some(port) = port {
                port.parse::<u16>()
                    .map_err(|_| bad("the port is not a number from 0 to 65535"))?;
            }
            servers.push(one.to_owned());
        }
        Ok(Target {
            url: url.to_owned(),
            servers,
            stream: DEFAULT_STREAM.to_owned(),
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: Duration::from_secs(5),
        })
    }

    /// Use the stream `name`.
    #[must_use]
    pub fn with_stream(mut self, name: impl Into<String>) -> Target {
        self.stream = name.into();
        self
    }

    /// Use the subject prefix `prefix` (one token, no dots).
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Target {
        self.prefix = prefix.into();
        self
    }

    /// Bound every request (connecting, stream and consumer calls, acks)
    /// by `timeout`.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Target {
        self.timeout = timeout;
        self
    }

    /// The server's URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The stream's name.
    #[must_use]
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The subject prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The bound on each request.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The subject of a record of `session` in `log`.
    #[must_use]
    pub fn subject(&self, log: uuid::Uuid, session: uuid::Uuid) -> String {
        format!("{}.{}.{}", self.prefix, log, session)
    }

    /// The subject filter of every record of `log`.
    #[must_use]
    pub fn log_filter(&self, log: uuid::Uuid) -> String {
        format!("{}.{}.*", self.prefix, log)
    }

    /// The subject filter of every record of `session`, from any log.
    #[must_use]
    pub fn session_filter(&self, session: uuid::Uuid) -> String {
        format!("{}.*.{}", self.prefix, session)
    }

    /// The subject filter of every record of every log.
    #[must_use]
    pub fn all_filter(&self) -> String {
        format!("{}.>", self.prefix)
    }

    pub(crate) fn server_error(&self, op: &'static str, reason: impl ToString) -> FleetError {
        FleetError::Server {
            url: self.url.clone(),
            stream: self.stream.clone(),
            op,
            reason: reason.to_string(),
        }
    }

    /// Connect, failing within the timeout if the server cannot be reached.
    pub(crate) async fn connect(&self) -> Result<jetstream::Context, FleetError> {
        let options = async_nats::ConnectOptions::new()
            .connection_timeout(self.timeout)
            .request_timeout(Some(self.timeout))
            .name("logbook-fleet");
        let connecting = options.connect(self.servers.as_slice());
        let client = match tokio::time::timeout(self.timeout * 2, connecting).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                return Err(FleetError::Connect {
                    url: self.url.clone(),
                    reason: e.to_string(),
                });
            }
            Err(_) => {
                return Err(FleetError::Connect {
                    url: self.url.clone(),
                    reason: format!("no answer within {:?}", self.timeout * 2),
                });
            }
        };
        let mut context = jetstream::new(client);
        context.set_timeout(self.timeout);
        Ok(context)
    }

    /// The stream, which must exist.
    pub(crate) async fn open_stream(
        &self,
        context: &jetstream::Context,
    ) -> Result<stream::Stream, FleetError> {
        match context.get_stream(&self.stream).await {
            Ok(stream) => Ok(stream),
            Err(e) if is_not_found(&e.to_string()) => Err(FleetError::NoStream {
                url: self.url.clone(),
                stream: self.stream.clone(),
            }),
            Err(e) => Err(self.server_error("looking up the stream", e)),
        }
    }

    /// The stream, created with `settings` if missing.
    pub(crate) async fn open_or_create_stream(
        &self,
        context: &jetstream::Context,
        settings: &StreamSettings,
    ) -> Result<stream::Stream, FleetError> {
        match context.get_stream(&self.stream).await {
            Ok(stream) => {
                let subjects = &stream.cached_info().config.subjects;
                let all = self.all_filter();
                if !subjects.iter().any(|s| *s == all || s == ">") {
                    return Err(FleetError::WrongStream {
                        url: self.url.clone(),
                        stream: self.stream.clone(),
                        subjects: subjects.join(", "),
                        want: all,
                    });
                }
                Ok(stream)
            }
            Err(e) if is_not_found(&e.to_string()) => {
                let config = stream::Config {
                    name: self.stream.clone(),
                    subjects: vec![self.all_filter()],
                    duplicate_window: settings.duplicate_window,
                    num_replicas: settings.replicas,
                    storage: stream::StorageType::File,
                    ..Default::default()
                };
                tracing::info!(stream = %self.stream, url = %self.url, replicas = settings.replicas, "creating the stream");
                context
                    .create_stream(config)
                    .await
                    .map_err(|e| self.server_error("creating the stream", e))
            }
            Err(e) => Err(self.server_error("looking up the stream", e)),
        }
    }
}

/// How a stream the shipper creates is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSettings {
    /// How long JetStream remembers a `Nats-Msg-Id` to drop a duplicate:
    /// it covers a publish retried after a lost ack (default 10 minutes).
    pub duplicate_window: Duration,
    /// Replicas (1, or 3 on a cluster).
    pub replicas: usize,
}

impl Default for StreamSettings {
    fn default() -> StreamSettings {
        StreamSettings {
            duplicate_window: Duration::from_secs(600),
            replicas: 1,
        }
    }
}

fn is_not_found(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("not found") || t.contains("10059")
}
