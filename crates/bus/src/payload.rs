//! Payload types carried by [`SessionEvent`](crate::SessionEvent) variants.
//!
//! Every type here is part of the on-disk encoding: fields are only ever
//! appended to enums at the end, and struct fields are never reordered.

use serde::{Deserialize, Serialize};

/// Where a batch of tokens was spent.
///
/// # Examples
///
/// ```
/// use logbook_bus::TokenSource;
///
/// assert_eq!(TokenSource::RlmSubcall.as_str(), "rlm_subcall");
/// assert!(TokenSource::RlmIteration.is_rlm());
/// assert!(!TokenSource::Root.is_rlm());
/// ```
// On-disk encoding: variants are encoded by index. Append new variants at the end only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub enum TokenSource {
    /// The root agent loop talking to its model.
    Root,
    /// One iteration of a recursive-language-model (RLM) loop.
    RlmIteration,
    /// A sub-call made by an RLM loop, often on a cheaper model.
    RlmSubcall,
    /// Tokens spent by a tool that calls a model itself.
    ToolEmbedded,
}

impl TokenSource {
    /// Every source, in declaration order.
    pub const ALL: [TokenSource; 4] = [
        TokenSource::Root,
        TokenSource::RlmIteration,
        TokenSource::RlmSubcall,
        TokenSource::ToolEmbedded,
    ];

    /// A stable, lower-case name for logs, JSON and tables.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenSource::Root => "root",
            TokenSource::RlmIteration => "rlm_iteration",
            TokenSource::RlmSubcall => "rlm_subcall",
            TokenSource::ToolEmbedded => "tool_embedded",
        }
    }

    /// Whether the tokens were spent inside an RLM loop.
    #[must_use]
    pub const fn is_rlm(self) -> bool {
        matches!(self, TokenSource::RlmIteration | TokenSource::RlmSubcall)
    }
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tokens actually spent by one model request (durable).
///
/// # Examples
///
/// ```
/// use logbook_bus::{TokenDelta, TokenSource};
///
/// let d = TokenDelta {
///     source: TokenSource::Root,
///     model: "m".into(),
///     prompt_tokens: u64::MAX,
///     completion_tokens: 5,
///     duration_ms: 0,
/// };
/// assert_eq!(d.total(), u64::MAX); // saturates, never wraps
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct TokenDelta {
    /// Which part of the agent spent the tokens.
    pub source: TokenSource,
    /// The model that served the request.
    pub model: String,
    /// Input tokens.
    pub prompt_tokens: u64,
    /// Output tokens.
    pub completion_tokens: u64,
    /// Wall-clock time of the request.
    pub duration_ms: u64,
}

impl TokenDelta {
    /// Prompt plus completion tokens, saturating at `u64::MAX`.
    #[must_use]
    pub const fn total(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// A pre-flight estimate of how full the context window is (ephemeral).
///
/// # Examples
///
/// ```
/// use logbook_bus::TokenEstimate;
///
/// let e = TokenEstimate { model: "m".into(), request_tokens: 50, budget: 200 };
/// assert_eq!(e.fraction(), 0.25);
/// let zero = TokenEstimate { model: "m".into(), request_tokens: 50, budget: 0 };
/// assert_eq!(zero.fraction(), 0.0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct TokenEstimate {
    /// The model the request is for.
    pub model: String,
    /// Estimated tokens of the request about to be sent.
    pub request_tokens: u64,
    /// The context budget of the model.
    pub budget: u64,
}

impl TokenEstimate {
    /// `request_tokens / budget`, or `0.0` when the budget is zero.
    #[must_use]
    #[expect(
        clippy::cast_precision_loss,
        reason = "a display ratio; token counts far below 2^52"
    )]
    pub fn fraction(&self) -> f64 {
        if self.budget == 0 {
            0.0
        } else {
            self.request_tokens as f64 / self.budget as f64
        }
    }
}

/// Which output stream of a running tool a chunk came from.
// On-disk encoding: append new variants at the end only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub enum ToolStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// How a recursive-language-model (RLM) loop ended.
// On-disk encoding: append new variants at the end only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub enum RlmOutcome {
    /// The loop reached an answer.
    Converged,
    /// The loop stopped at its iteration limit.
    MaxIterations,
    /// The loop was cancelled.
    Aborted,
    /// The loop failed; see the event's `reason`.
    Failed,
}

impl RlmOutcome {
    /// A stable, lower-case name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            RlmOutcome::Converged => "converged",
            RlmOutcome::MaxIterations => "max_iterations",
            RlmOutcome::Aborted => "aborted",
            RlmOutcome::Failed => "failed",
        }
    }
}

/// Serde for the bytes of `SessionEvent::Custom`: a byte string in binary
/// formats (the codec: a length, then the bytes), base64 (standard
/// alphabet, padded) in human-readable ones (JSON).
pub(crate) mod bytes {
    use std::fmt;

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::de::{self, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&STANDARD.encode(data))
        } else {
            s.serialize_bytes(data)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            d.deserialize_str(Base64)
        } else {
            d.deserialize_byte_buf(Raw)
        }
    }

    struct Base64;

    impl Visitor<'_> for Base64 {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a base64 string")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
            STANDARD
                .decode(v)
                .map_err(|e| E::custom(format!("not base64: {e}")))
        }
    }

    struct Raw;

    impl<'de> Visitor<'de> for Raw {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("bytes")
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}
