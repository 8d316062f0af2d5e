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
/// // A second stream beside the default one takes subjects of its own.
/// let other = Target::parse("nats://127.0.0.1:4222")?.with_stream("OTHER").with_prefix("other")?;
/// assert_eq!(other.all_filter(), "other.>");
/// assert!(Target::parse("http://example.com").is_err());
/// assert!(Target::parse("nats://127.0.0.1:4222")?.with_prefix("a.b").is_err());
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
    /// Whether `prefix` was chosen ([`Target::with_prefix`]); if not, an
    /// existing stream's own prefix is used (see [`Target::with_prefix`]).
    prefix_given: bool,
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
            prefix_given: false,
            timeout: Duration::from_secs(5),
        })
    }

    /// Use the stream `name`.
    #[must_use]
    pub fn with_stream(mut self, name: impl Into<String>) -> Target {
        self.stream = name.into();
        self
    }

    /// Use the subject prefix `prefix`: the records' subjects are
    /// `<prefix>.<log id>.<session>`, and a stream the shipper creates takes
    /// `<prefix>.>`. Two streams on one server need two prefixes (a server
    /// refuses a stream whose subjects overlap another's).
    ///
    /// Without it, the shipper uses [`DEFAULT_PREFIX`] (and refuses a
    /// stream that does not take `logbook.>`, rather than take it over);
    /// readers ([`read`](crate::read), [`fetch_session`](crate::fetch_session))
    /// use the stream's own: a stream that does not take `logbook.>` but
    /// takes exactly one `<prefix>.>` is read with that prefix, so a reader
    /// needs only the stream's name.
    ///
    /// # Errors
    ///
    /// [`FleetError::BadPrefix`] unless `prefix` is one subject token of
    /// ASCII letters, digits, `-` and `_`.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Result<Target, FleetError> {
        let prefix = prefix.into();
        if let Some(reason) = prefix_problem(&prefix) {
            return Err(FleetError::BadPrefix {
                prefix,
                reason: reason.to_owned(),
            });
        }
        self.prefix = prefix;
        self.prefix_given = true;
        Ok(self)
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

    /// The stream, which must exist, and this target with the prefix it
    /// is read with ([`Target::with_prefix`]).
    pub(crate) async fn open_stream(
        &self,
        context: &jetstream::Context,
    ) -> Result<(stream::Stream, Target), FleetError> {
        match context.get_stream(&self.stream).await {
            Ok(stream) => {
                let target = self.for_subjects(&stream.cached_info().config.subjects, true)?;
                Ok((stream, target))
            }
            Err(e) if is_not_found(&e.to_string()) => Err(FleetError::NoStream {
                url: self.url.clone(),
                stream: self.stream.clone(),
            }),
            Err(e) => Err(self.server_error("looking up the stream", e)),
        }
    }

    /// The stream, created with `settings` if missing, and this target
    /// with the prefix it is shipped to with ([`Target::with_prefix`]).
    pub(crate) async fn open_or_create_stream(
        &self,
        context: &jetstream::Context,
        settings: &StreamSettings,
    ) -> Result<(stream::Stream, Target), FleetError> {
        match context.get_stream(&self.stream).await {
            Ok(stream) => {
                // Never another prefix than the one given (or the default):
                // a stream of other subjects is not taken over.
                let target = self.for_subjects(&stream.cached_info().config.subjects, false)?;
                Ok((stream, target))
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
                match context.create_stream(config).await {
                    Ok(stream) => Ok((stream, self.clone())),
                    // Another stream takes these subjects: waiting will not
                    // change that.
                    Err(e) if is_overlap(&e.to_string()) => {
                        let other = context.stream_by_subject(self.all_filter()).await.ok();
                        Err(FleetError::SubjectsTaken {
                            url: self.url.clone(),
                            stream: self.stream.clone(),
                            subjects: self.all_filter(),
                            other,
                        })
                    }
                    Err(e) => Err(self.server_error("creating the stream", e)),
                }
            }
            Err(e) => Err(self.server_error("looking up the stream", e)),
        }
    }
}

impl Target {
    /// This target with the prefix to use on a stream that takes
    /// `subjects`: its own, or (a reader, `discover`, without a prefix
    /// given) the stream's ([`Target::with_prefix`]).
    fn for_subjects(&self, subjects: &[String], discover: bool) -> Result<Target, FleetError> {
        let takes = |prefix: &str| {
            subjects
                .iter()
                .any(|s| s == ">" || s.strip_suffix(".>") == Some(prefix))
        };
        if takes(&self.prefix) {
            return Ok(self.clone());
        }
        if discover && !self.prefix_given {
            let own: Vec<&str> = subjects
                .iter()
                .filter_map(|s| s.strip_suffix(".>"))
                .filter(|p| prefix_problem(p).is_none())
                .collect();
            if let [one] = own.as_slice() {
                return Ok(Target {
                    prefix: (*one).to_owned(),
                    ..self.clone()
                });
            }
        }
        // A reader of a stream whose subjects are not all `<token>.>` (made
        // by hand, say `logbook.*.*`) reads with the prefix it has: the
        // server's answer decides.
        if discover && !subjects.iter().all(|s| s.strip_suffix(".>").is_some()) {
            return Ok(self.clone());
        }
        Err(FleetError::WrongStream {
            url: self.url.clone(),
            stream: self.stream.clone(),
            subjects: subjects.join(", "),
            want: self.all_filter(),
        })
    }
}

/// What is wrong with `prefix` as a subject prefix, if anything.
fn prefix_problem(prefix: &str) -> Option<&'static str> {
    if prefix.is_empty() {
        Some("it is empty")
    } else if !prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Some("only ASCII letters, digits, - and _ may be in it (one subject token)")
    } else {
        None
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

/// The server's refusal of a stream whose subjects another stream takes.
fn is_overlap(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("overlap") || t.contains("10065")
}

fn is_not_found(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("not found") || t.contains("10059")
}
