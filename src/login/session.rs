//! Sessions: what the session cookie holds, and how a session ends before
//! its cookie does.
//!
//! A session is valid while its cookie decrypts, it has not expired, it
//! carries the login's session version, and this process has not ended it:
//! logged out (by its ID), its user signed out everywhere, or everyone
//! signed out. What a process ends, it remembers until the session would
//! have expired anyway, for at most 100,000 logouts and users; past that,
//! the oldest are forgotten by ending every session issued before them
//! (failing closed: more people sign in again, nobody gets back in).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use moka::{notification::RemovalCause, sync::Cache};
use serde::{Deserialize, Serialize};

use super::Profile;
use crate::UserId;

/// Sessions logged out, and users signed out, remembered at most.
const REMEMBERED: u64 = 100_000;

/// What the session cookie holds (encrypted and authenticated).
#[derive(Serialize, Deserialize)]
pub(super) struct Session {
    /// 128 random bits, hex.
    id: String,
    pub(super) user_id: UserId,
    /// Unix milliseconds.
    issued_at: u64,
    /// Unix seconds.
    expires_at: u64,
    /// The login's session version when it was issued.
    version: u32,
    /// The visitor's handle and avatar, when Figma gave them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) profile: Option<Profile>,
}

/// A sign-out, as replicas tell each other of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SignOut {
    /// One session (a logout), by its ID, issued then (Unix ms).
    Session { id: u128, issued_at: u64 },
    /// Every session of a user issued until `at` (Unix ms).
    User { user: UserId, at: u64 },
    /// Every session issued until `at` (Unix ms).
    Everyone { at: u64 },
}

/// The sessions a process has ended, and the version in force.
pub(super) struct Sessions {
    version: u32,
    lifetime: Duration,
    /// Logged-out sessions by ID, with when they were issued.
    ended: Cache<u128, u64>,
    /// Users signed out everywhere, and when.
    users_out: Cache<UserId, u64>,
    /// Every session issued at or before this (Unix ms) is over.
    all_out_at: Arc<AtomicU64>,
}

pub(super) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Forgetting an ended session or a signed-out user for want of room ends
/// every session issued up to `at` instead.
fn forget_closed(all_out_at: &Arc<AtomicU64>, at: u64, cause: RemovalCause) {
    if cause == RemovalCause::Size {
        all_out_at.fetch_max(at, Ordering::AcqRel);
    }
}

/// What a process remembers of ended sessions, for as long as a session
/// lasts, at most [`REMEMBERED`] of them.
fn remembered<K>(lifetime: Duration, all_out_at: &Arc<AtomicU64>) -> Cache<K, u64>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
{
    let out = all_out_at.clone();
    Cache::builder()
        .max_capacity(REMEMBERED)
        .time_to_live(lifetime)
        .eviction_listener(move |_, at, cause| forget_closed(&out, at, cause))
        .build()
}

impl Sessions {
    pub(super) fn new(version: u32, lifetime: Duration) -> Self {
        let all_out_at = Arc::new(AtomicU64::new(0));
        Self {
            version,
            lifetime,
            ended: remembered(lifetime, &all_out_at),
            users_out: remembered(lifetime, &all_out_at),
            all_out_at,
        }
    }

    /// A new session for `user`, shown as `profile`.
    pub(super) fn issue(&self, user: UserId, profile: Option<Profile>) -> Session {
        let now = unix_ms();
        Session {
            id: format!("{:032x}", rand::random::<u128>()),
            user_id: user,
            issued_at: now,
            expires_at: (now / 1000).saturating_add(self.lifetime.as_secs()),
            version: self.version,
            profile,
        }
    }

    /// Whether `session` still signs its user in.
    pub(super) fn valid(&self, session: &Session) -> bool {
        let Ok(id) = u128::from_str_radix(&session.id, 16) else {
            return false;
        };
        session.expires_at > super::unix_now()
            && session.version == self.version
            && session.issued_at > self.all_out_at.load(Ordering::Acquire)
            && !self.ended.contains_key(&id)
            && self
                .users_out
                .get(&session.user_id)
                .is_none_or(|at| session.issued_at > at)
    }

    /// Ends `session` (a logout): what ended, to tell other replicas.
    pub(super) fn end(&self, session: &Session) -> Option<SignOut> {
        let id = u128::from_str_radix(&session.id, 16).ok()?;
        let out = SignOut::Session {
            id,
            issued_at: session.issued_at,
        };
        self.apply(&out);
        Some(out)
    }

    /// Ends every session of `user` issued until now.
    pub(super) fn sign_out_user(&self, user: &UserId) -> SignOut {
        let out = SignOut::User {
            user: user.clone(),
            at: unix_ms(),
        };
        self.apply(&out);
        out
    }

    /// Ends every session issued until now.
    pub(super) fn sign_out_everyone(&self) -> SignOut {
        let out = SignOut::Everyone { at: unix_ms() };
        self.apply(&out);
        out
    }

    /// Applies a sign-out, this replica's or another's.
    pub(super) fn apply(&self, out: &SignOut) {
        match out {
            SignOut::Session { id, issued_at } => self.ended.insert(*id, *issued_at),
            SignOut::User { user, at } => {
                let at = self.users_out.get(user).map_or(*at, |known| known.max(*at));
                self.users_out.insert(user.clone(), at);
            }
            SignOut::Everyone { at } => {
                self.all_out_at.fetch_max(*at, Ordering::AcqRel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserId {
        UserId::new(id).unwrap()
    }

    fn sessions(version: u32) -> Sessions {
        Sessions::new(version, Duration::from_secs(3600))
    }

    /// Issued strictly after everything before it, to the millisecond.
    fn issue(sessions: &Sessions, id: &str) -> Session {
        std::thread::sleep(Duration::from_millis(2));
        sessions.issue(user(id), None)
    }

    #[test]
    fn a_logout_ends_that_session_only() {
        let sessions = sessions(1);
        let (a, b) = (issue(&sessions, "1"), issue(&sessions, "1"));
        assert!(sessions.valid(&a) && sessions.valid(&b));
        sessions.end(&a);
        assert!(!sessions.valid(&a));
        assert!(sessions.valid(&b));
    }

    #[test]
    fn signing_a_user_out_ends_their_sessions_until_then() {
        let sessions = sessions(1);
        let (a, other) = (issue(&sessions, "1"), issue(&sessions, "2"));
        std::thread::sleep(Duration::from_millis(2));
        sessions.sign_out_user(&user("1"));
        assert!(!sessions.valid(&a));
        assert!(sessions.valid(&other));
        assert!(sessions.valid(&issue(&sessions, "1")));
    }

    #[test]
    fn signing_everyone_out_ends_every_session_until_then() {
        let sessions = sessions(1);
        let (a, b) = (issue(&sessions, "1"), issue(&sessions, "2"));
        std::thread::sleep(Duration::from_millis(2));
        sessions.sign_out_everyone();
        assert!(!sessions.valid(&a) && !sessions.valid(&b));
        assert!(sessions.valid(&issue(&sessions, "1")));
    }

    #[test]
    fn another_version_expired_or_malformed_sessions_are_over() {
        let old = sessions(1).issue(user("1"), None);
        assert!(!sessions(2).valid(&old));
        let mut expired = sessions(1).issue(user("1"), None);
        expired.expires_at = unix_ms() / 1000 - 1;
        assert!(!sessions(1).valid(&expired));
        let mut forged = sessions(1).issue(user("1"), None);
        forged.id = "not hex".to_owned();
        assert!(!sessions(1).valid(&forged));
    }

    #[test]
    fn forgetting_a_logout_for_room_ends_every_session_up_to_it() {
        let all_out_at = Arc::new(AtomicU64::new(0));
        forget_closed(&all_out_at, 7, RemovalCause::Expired);
        assert_eq!(all_out_at.load(Ordering::Acquire), 0);
        forget_closed(&all_out_at, 7, RemovalCause::Size);
        forget_closed(&all_out_at, 5, RemovalCause::Size);
        assert_eq!(all_out_at.load(Ordering::Acquire), 7);
    }
}
