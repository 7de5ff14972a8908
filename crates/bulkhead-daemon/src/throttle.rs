//! Rate limiting of denied callers: a token that keeps getting refused (403, or 401
//! for a real token id that is expired, revoked or given with a wrong secret) is
//! refused with 429 for a while, before any database work.
//!
//! - Each denial of a token id is counted in a sliding window; the
//!   [`DenialLimit::max_denials`]-th within [`DenialLimit::window`] blocks the id for
//!   [`DenialLimit::block`]. While blocked, *every* request with that id gets 429
//!   (with `Retry-After`), allowed or not.
//! - The audit log keeps every denial up to the block (each its own record), then one
//!   `rate-limit` record when the block starts and one aggregate record when it ends
//!   with the number of requests refused in between, so a flood grows the log by two
//!   records, not one per request.
//! - Text that is not shaped like a token is refused (401) without a database lookup
//!   and without an audit record, so it is not counted here either.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How many denials block a caller, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DenialLimit {
    /// Denials within `window` that start a block.
    pub max_denials: u32,
    /// The sliding window.
    pub window: Duration,
    /// How long a block lasts.
    pub block: Duration,
}

impl Default for DenialLimit {
    fn default() -> Self {
        DenialLimit {
            max_denials: 20,
            window: Duration::from_secs(60),
            block: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Default)]
struct Caller {
    /// Times of the denials inside the window, oldest first.
    denials: Vec<Instant>,
    /// Blocked until then.
    blocked_until: Option<Instant>,
    /// Requests refused during the current block.
    refused: u64,
}

/// What the caller of [`Throttle::record_denial`] must audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tripped {
    /// Not blocked (yet).
    No,
    /// This denial started a block of the given length.
    Blocked(Duration),
}

/// A block that ended, for the aggregate audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// The token id.
    pub id: String,
    /// Requests refused with 429 during the block.
    pub refused: u64,
}

/// The limiter's state (one per daemon).
#[derive(Debug, Default)]
pub struct Throttle {
    limit: DenialLimit,
    callers: HashMap<String, Caller>,
}

impl Throttle {
    /// A limiter with `limit`.
    pub fn new(limit: DenialLimit) -> Throttle {
        Throttle {
            limit,
            callers: HashMap::new(),
        }
    }

    /// `Some(seconds to wait)` when `id` is blocked at `now` (and counts the refusal).
    pub fn check(&mut self, id: &str, now: Instant) -> Option<u64> {
        let caller = self.callers.get_mut(id)?;
        let until = caller.blocked_until?;
        if now >= until {
            return None;
        }
        caller.refused += 1;
        Some((until - now).as_secs().max(1))
    }

    /// Counts a denial of `id` at `now`.
    pub fn record_denial(&mut self, id: &str, now: Instant) -> Tripped {
        let limit = self.limit;
        let caller = self.callers.entry(id.to_owned()).or_default();
        caller
            .denials
            .retain(|t| now.saturating_duration_since(*t) < limit.window);
        caller.denials.push(now);
        let blocked = caller.blocked_until.is_some_and(|until| now < until);
        if !blocked && caller.denials.len() >= limit.max_denials as usize {
            caller.blocked_until = Some(now + limit.block);
            caller.refused = 0;
            caller.denials.clear();
            return Tripped::Blocked(limit.block);
        }
        Tripped::No
    }

    /// Blocks that are over at `now`, removed from the state (audit each once).
    pub fn ended(&mut self, now: Instant) -> Vec<Ended> {
        let window = self.limit.window;
        let mut ended = Vec::new();
        self.callers.retain(|id, caller| {
            if let Some(until) = caller.blocked_until
                && now >= until
            {
                ended.push(Ended {
                    id: id.clone(),
                    refused: caller.refused,
                });
                caller.blocked_until = None;
                caller.refused = 0;
            }
            caller
                .denials
                .retain(|t| now.saturating_duration_since(*t) < window);
            caller.blocked_until.is_some() || !caller.denials.is_empty()
        });
        ended.sort_by(|a, b| a.id.cmp(&b.id));
        ended
    }
}

/// The token id in `bht_<id>_<secret>`, without looking anything up.
pub fn token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(bulkhead_store::TOKEN_PREFIX)?;
    let (id, _) = rest.split_once('_')?;
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit() -> DenialLimit {
        DenialLimit {
            max_denials: 3,
            window: Duration::from_secs(10),
            block: Duration::from_secs(5),
        }
    }

    #[test]
    fn the_nth_denial_in_the_window_blocks_and_the_block_ends() {
        let mut t = Throttle::new(limit());
        let t0 = Instant::now();
        assert_eq!(t.record_denial("a", t0), Tripped::No);
        assert_eq!(t.record_denial("a", t0), Tripped::No);
        assert_eq!(t.check("a", t0), None);
        assert_eq!(
            t.record_denial("a", t0),
            Tripped::Blocked(Duration::from_secs(5))
        );
        assert_eq!(t.check("a", t0 + Duration::from_secs(1)), Some(4));
        assert_eq!(t.check("a", t0 + Duration::from_secs(2)), Some(3));
        assert_eq!(t.check("b", t0), None, "others are not affected");
        assert!(t.ended(t0 + Duration::from_secs(4)).is_empty());
        let after = t0 + Duration::from_secs(5);
        assert_eq!(t.check("a", after), None);
        assert_eq!(
            t.ended(after),
            vec![Ended {
                id: "a".to_owned(),
                refused: 2
            }]
        );
        assert!(t.ended(after).is_empty(), "reported once");
    }

    #[test]
    fn denials_spread_beyond_the_window_never_block() {
        let mut t = Throttle::new(limit());
        let t0 = Instant::now();
        for i in 0..10 {
            let at = t0 + Duration::from_secs(6 * i);
            assert_eq!(t.record_denial("a", at), Tripped::No);
        }
    }

    #[test]
    fn token_ids_are_read_without_a_lookup() {
        let token = format!("bht_{}_{}", "0123456789abcdef", "f".repeat(64));
        assert_eq!(token_id(&token), Some("0123456789abcdef"));
        assert_eq!(token_id("bht_nonsense"), None);
        assert_eq!(token_id("Bearer x"), None);
    }
}
