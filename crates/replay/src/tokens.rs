//! Token accounting: [`TokenTotals`] and [`TokenAccounts`].

use std::collections::BTreeMap;

use logbook_bus::{TokenDelta, TokenSource};

/// Sums of token counts. Every addition saturates at `u64::MAX`, so a
/// hostile or corrupt log can pin a total at the maximum but never wrap it.
///
/// # Examples
///
/// ```
/// use logbook_replay::TokenTotals;
///
/// let t = TokenTotals::default();
/// assert_eq!((t.prompt, t.completion, t.total, t.requests), (0, 0, 0, 0));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct TokenTotals {
    /// Input tokens.
    pub prompt: u64,
    /// Output tokens.
    pub completion: u64,
    /// Prompt plus completion tokens (each request's
    /// [`TokenDelta::total`], summed).
    pub total: u64,
    /// Requests counted.
    pub requests: u64,
    /// Wall-clock milliseconds of those requests.
    pub duration_ms: u64,
}

impl TokenTotals {
    pub(crate) fn add(&mut self, prompt: u64, completion: u64, duration_ms: u64) {
        self.prompt = self.prompt.saturating_add(prompt);
        self.completion = self.completion.saturating_add(completion);
        self.total = self.total.saturating_add(prompt.saturating_add(completion));
        self.requests = self.requests.saturating_add(1);
        self.duration_ms = self.duration_ms.saturating_add(duration_ms);
    }
}

/// A session's token accounting.
///
/// `TokenUsage` events are summed overall, per model and per
/// [`TokenSource`]. Legacy `UsageReport` events describe the same requests
/// in an older vocabulary, so they are summed **apart**, in
/// [`legacy`](Self::legacy), and never added to the `TokenUsage` totals: a
/// runtime that emits both does not count its tokens twice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenAccounts {
    all: TokenTotals,
    by_model: BTreeMap<String, TokenTotals>,
    by_source: BTreeMap<TokenSource, TokenTotals>,
    legacy: TokenTotals,
}

impl TokenAccounts {
    pub(crate) fn add_usage(&mut self, delta: &TokenDelta) {
        let TokenDelta {
            source,
            model,
            prompt_tokens,
            completion_tokens,
            duration_ms,
        } = delta;
        let add = |t: &mut TokenTotals| t.add(*prompt_tokens, *completion_tokens, *duration_ms);
        add(&mut self.all);
        // Look up before inserting: the model's name is cloned once per
        // model, not once per event.
        match self.by_model.get_mut(model) {
            Some(t) => add(t),
            None => add(self.by_model.entry(model.clone()).or_default()),
        }
        add(self.by_source.entry(*source).or_default());
    }

    pub(crate) fn add_legacy(&mut self, prompt: u64, completion: u64, duration_ms: u64) {
        self.legacy.add(prompt, completion, duration_ms);
    }

    /// Totals over every `TokenUsage` event.
    #[must_use]
    pub fn total(&self) -> TokenTotals {
        self.all
    }

    /// `TokenUsage` totals per model, ordered by model name.
    pub fn by_model(&self) -> impl Iterator<Item = (&str, TokenTotals)> {
        self.by_model.iter().map(|(m, t)| (m.as_str(), *t))
    }

    /// `TokenUsage` totals of one model (zero if it never appeared).
    #[must_use]
    pub fn model(&self, model: &str) -> TokenTotals {
        self.by_model.get(model).copied().unwrap_or_default()
    }

    /// `TokenUsage` totals per source, in [`TokenSource`] order; sources
    /// that never appeared are left out.
    pub fn by_source(&self) -> impl Iterator<Item = (TokenSource, TokenTotals)> {
        self.by_source.iter().map(|(s, t)| (*s, *t))
    }

    /// `TokenUsage` totals of one source (zero if it never appeared).
    #[must_use]
    pub fn source(&self, source: TokenSource) -> TokenTotals {
        self.by_source.get(&source).copied().unwrap_or_default()
    }

    /// Totals of the legacy `UsageReport` events, kept apart from the
    /// `TokenUsage` totals.
    #[must_use]
    pub fn legacy(&self) -> TokenTotals {
        self.legacy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(source: TokenSource, model: &str, p: u64, c: u64) -> TokenDelta {
        TokenDelta {
            source,
            model: model.into(),
            prompt_tokens: p,
            completion_tokens: c,
            duration_ms: 1,
        }
    }

    #[test]
    fn sums_per_model_and_source() {
        let mut a = TokenAccounts::default();
        a.add_usage(&delta(TokenSource::Root, "big", 10, 5));
        a.add_usage(&delta(TokenSource::RlmSubcall, "small", 3, 1));
        a.add_usage(&delta(TokenSource::Root, "small", 2, 2));
        a.add_legacy(100, 100, 0);
        assert_eq!(a.total().total, 23);
        assert_eq!(a.total().requests, 3);
        assert_eq!(a.model("small").prompt, 5);
        assert_eq!(a.model("missing"), TokenTotals::default());
        assert_eq!(a.source(TokenSource::Root).completion, 7);
        assert_eq!(a.source(TokenSource::ToolEmbedded).requests, 0);
        assert_eq!(a.legacy().total, 200);
        let models: Vec<_> = a.by_model().map(|(m, _)| m).collect();
        assert_eq!(models, ["big", "small"]);
    }

    #[test]
    fn saturates_instead_of_wrapping() {
        let mut a = TokenAccounts::default();
        a.add_usage(&delta(TokenSource::Root, "m", u64::MAX, 1));
        a.add_usage(&delta(TokenSource::Root, "m", u64::MAX, u64::MAX));
        assert_eq!(a.total().prompt, u64::MAX);
        assert_eq!(a.total().total, u64::MAX);
        assert_eq!(a.total().completion, u64::MAX);
    }
}
