//! The new-caller lane shared among clients, and suspects.
//!
//! **Max-min shares.** A cold lookup of a plugin payment token (a miss
//! that needs a call, for a caller nobody has vouched for) counts against
//! its client for a minute. A client may make another while it has made
//! fewer than its max-min share of the budget among the clients that made
//! one in the last minute: the share a client gets is what the others
//! leave, split evenly among those who want more (water-filling). A lone
//! client, or every user behind a proxy that is not configured, may use
//! the whole budget; a flood gets at most 1/n of it while n clients ask.
//! [`PaywallBuilder::client_share`](crate::PaywallBuilder::client_share)
//! sets a floor under every client's share.
//!
//! **In turn, when a slot is handed out.** The lane is served client by
//! client: a slot that comes free goes to the waiting client with the
//! fewest slots in the last minute (one with none first), then to its
//! oldest lookup, and the client is charged then. A client may have only
//! so many lookups waiting (what the budget gives within a wait): a flood
//! from one client never fills the queue ahead of a newcomer.
//!
//! **A place kept.** A client whose cold lookup in the new callers' lane
//! found no slot in time (`503 rate_limited`), and that had no slot in the
//! last minute, keeps its place for ten minutes: its next one queues from
//! when the refused one did (but never more than one wait, `max_wait`,
//! ahead of now), before those who came after it, so a caller who retries
//! is not sent to the back. It orders the lane, never widens a share; the
//! budget replicas share through Redis has no queue, and ignores it.
//!
//! **Suspects.** What Figma said of a client's cold lookups lately (its
//! counts halve every 30 minutes) gives the share of them it refused.
//! That share of the client's cold lookups waits for slots no one else
//! wants (a budget left unused for a minute); the rest go in the new
//! callers' lane. A client Figma refused twice and never answered is all
//! suspect (but for one lookup a minute in the new callers' lane, its
//! trickle). An address where honest users and an attacker meet is demoted
//! in proportion to the attacker's part of its traffic, never locked out:
//! a suspect's trickle, and its idle slots, go to the token it asked about
//! first among those it asked about again (a caller who retries), so a
//! flood of new tokens, each sent once, can never take them from a buyer
//! who waits; tokens an attacker sends again are burnt one a slot, and
//! those it starts after the buyer's come after it.
//! Suspicion comes from the traffic, never from one request, fades unless
//! the refusals go on (each costs the attacker a lookup at Figma), and
//! replaying a token Figma refused costs nothing and renews nothing (the
//! engine answers it from memory without asking here).

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use moka::sync::Cache;

use super::Lane;
use crate::{
    clock::{later, Clock},
    error::{Error, ThrottleReason},
    ClientKey,
};

/// How long a cold lookup counts against its client.
const WINDOW: Duration = Duration::from_secs(60);

/// How long a client's record is kept without news.
const SUSPECT_FOR: Duration = Duration::from_secs(60 * 60);

/// The counts of a client's answers halve this often.
const HALF_LIFE: Duration = Duration::from_secs(30 * 60);

/// How often a suspect gets a lookup in the new callers' lane.
const TRICKLE_EVERY: Duration = Duration::from_secs(60);

/// How many of the tokens suspects asked about lately are remembered, by
/// a fingerprint of the question (never the token), with when each was
/// first asked about. moka's admission keeps a token asked about again
/// over a flood of tokens asked about once.
const ASKED_KEPT: u64 = 65_536;

/// How many tokens a suspect asked about again are remembered: the ones
/// first asked about earliest.
const AGAIN_KEPT: usize = 16;

/// How long a token a suspect asked about is remembered without being
/// asked about again.
const PENDING_FOR: Duration = Duration::from_secs(3 * 60);

/// How many refusals, decayed, make any suspicion: two within about 12
/// minutes, three within an hour.
const SUSPECT_AFTER: f64 = 1.5;

/// Past this many clients in a minute (a botnet), shares are an even
/// split, without the water-filling.
const WATER_FILL_UP_TO: usize = 1024;

/// How often the whole table forgets clients it has not heard from.
const TIDY_EVERY: u64 = 256;

/// How long a client whose cold lookup found no slot keeps its place in
/// the queue for its next one (a caller gives up on a visit about then).
const PLACE_KEPT_FOR: Duration = Duration::from_secs(10 * 60);

/// What a cold lookup may take: its lane, and what let it in there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Grant {
    pub(super) lane: Lane,
    via: Via,
    /// A suspect's token asked about again: when it was first asked about,
    /// its place in the suspects' lane.
    pub(super) senior_since: Option<Instant>,
    question: u64,
}

/// What let a cold lookup in its lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// The client's share (nothing Figma refused lately).
    Share,
    /// The share of its lookups Figma did not refuse.
    Credit,
    /// A suspect's one lookup a minute, for a token asked about again.
    Trickle,
    /// A suspect's wait for idle slots.
    Idle,
}

pub(super) struct Clients {
    /// Cold lookups in the last minute, by client.
    recent: Mutex<HashMap<ClientKey, VecDeque<Instant>>>,
    /// What Figma said of each client's cold lookups in the last hour.
    records: Cache<ClientKey, Arc<Mutex<Record>>>,
    /// When each token a suspect asked about was first asked about.
    first_asked: Cache<(ClientKey, u64), Instant>,
    /// When a client's cold lookup first found no slot in time, until one
    /// of its cold lookups gets one: its next ones queue from then.
    waiting_since: Cache<ClientKey, Instant>,
    /// A floor under each client's share, a minute (0: none).
    floor: AtomicU32,
    asked: AtomicU64,
    clock: Clock,
}

#[derive(Debug)]
struct Record {
    /// When the counts were last brought up to date.
    at: Instant,
    /// Cold lookups Figma answered or refused, decayed.
    cold: f64,
    /// Of them, refused.
    refused: f64,
    /// Lookups owed to the new callers' lane: each cold lookup adds the
    /// share Figma did not refuse.
    credit: f64,
    /// When it last had (or, all suspect, started waiting for) its trickle.
    trickle_at: Option<Instant>,
    /// The tokens it asked about again that no slot has looked up yet,
    /// while it is a suspect: the [`AGAIN_KEPT`] first asked about.
    again: Vec<Again>,
}

/// A token a suspect asked about again, by a fingerprint of the question.
#[derive(Debug, Clone, Copy)]
struct Again {
    question: u64,
    /// When it was first asked about.
    first: Instant,
    /// When it was last asked about.
    last: Instant,
}

impl Record {
    fn new(now: Instant) -> Self {
        Self {
            at: now,
            cold: 0.0,
            refused: 0.0,
            credit: 0.0,
            trickle_at: None,
            again: Vec::new(),
        }
    }

    /// Notes that `question`, first asked about at `first`, was asked about
    /// again now; returns `first` if it is the most senior of the tokens
    /// asked about again (the one a caller has waited on longest).
    fn asked_again(&mut self, question: u64, first: Instant, now: Instant) -> Option<Instant> {
        self.again
            .retain(|a| now.saturating_duration_since(a.last) < PENDING_FOR);
        match self.again.iter_mut().find(|a| a.question == question) {
            Some(again) => again.last = now,
            None => {
                let again = Again {
                    question,
                    first,
                    last: now,
                };
                if self.again.len() < AGAIN_KEPT {
                    self.again.push(again);
                } else if let Some(newest) = self.again.iter_mut().max_by_key(|a| a.first) {
                    // Only the earliest are kept: one asked about later
                    // than them all waits behind them anyway.
                    if newest.first > first {
                        *newest = again;
                    }
                }
            }
        }
        let senior = self.again.iter().min_by_key(|a| a.first)?;
        (senior.question == question).then_some(senior.first)
    }

    /// Brings the counts to `now`: they halve every [`HALF_LIFE`].
    fn decay(&mut self, now: Instant) {
        let halves = now.saturating_duration_since(self.at).as_secs_f64() / HALF_LIFE.as_secs_f64();
        if halves > 0.0 {
            let keep = 0.5f64.powf(halves);
            self.cold *= keep;
            self.refused *= keep;
            self.at = now;
        }
    }

    /// The share of its cold lookups Figma refused, once there is a
    /// pattern (two refusals at least).
    fn refused_share(&self) -> f64 {
        if self.refused < SUSPECT_AFTER || self.cold <= 0.0 {
            return 0.0;
        }
        (self.refused / self.cold).clamp(0.0, 1.0)
    }
}

impl Clients {
    pub(super) fn new(clock: &Clock) -> Self {
        Self {
            recent: Mutex::default(),
            records: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(SUSPECT_FOR)
                .build(),
            first_asked: Cache::builder()
                .max_capacity(ASKED_KEPT)
                .time_to_idle(PENDING_FOR)
                .build(),
            waiting_since: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(PLACE_KEPT_FOR)
                .build(),
            floor: AtomicU32::new(0),
            asked: AtomicU64::new(0),
            clock: clock.clone(),
        }
    }

    pub(super) fn set_floor(&self, per_minute: u32) {
        self.floor.store(per_minute, Ordering::Relaxed);
    }

    /// The lane of `client`'s cold lookup in a budget of `per_minute`, or
    /// how long it must wait for its share. Nothing is spent until the
    /// lookup gets its slot ([`took`](Self::took)).
    pub(super) fn lane(
        &self,
        client: &ClientKey,
        question: u64,
        per_minute: u32,
    ) -> Result<Grant, Error> {
        let now = self.clock.now();
        let mut grant = Grant {
            lane: Lane::NewCaller,
            via: Via::Share,
            senior_since: None,
            question,
        };
        if let Some(record) = self.records.get(client) {
            let mut record = record.lock().unwrap_or_else(|e| e.into_inner());
            record.decay(now);
            let share = record.refused_share();
            if share > 0.0 {
                grant.senior_since = match self.first_asked.get(&(*client, question)) {
                    Some(first) => record.asked_again(question, first, now),
                    None => {
                        self.first_asked.insert((*client, question), now);
                        None
                    }
                };
                // Each attempt earns the share Figma did not refuse.
                record.credit = (record.credit + 1.0 - share).min(1.0);
                let trickle_due = record
                    .trickle_at
                    .is_none_or(|at| now.saturating_duration_since(at) >= TRICKLE_EVERY);
                if record.credit >= 1.0 - 1e-9 {
                    grant.via = Via::Credit;
                } else if trickle_due && grant.senior_since.is_some() {
                    // Only a caller who came back, and waited longest.
                    grant.via = Via::Trickle;
                } else {
                    grant.lane = Lane::Suspect;
                    grant.via = Via::Idle;
                    return Ok(grant);
                }
            }
        }
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if self
            .asked
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(TIDY_EVERY)
        {
            recent.retain(|_, times| {
                forget_old(times, now);
                !times.is_empty()
            });
        }
        let mine = recent.entry(*client).or_default();
        forget_old(mine, now);
        let used = mine.len();
        let oldest = mine.front().copied();
        let others: Vec<usize> = recent
            .iter()
            .filter(|(key, _)| *key != client)
            .map(|(_, times)| lately(times, now))
            .filter(|&n| n > 0)
            .collect();
        let share = max_min_share(f64::from(per_minute), &others)
            .max(f64::from(self.floor.load(Ordering::Relaxed)));
        // No one else asked lately: no share to keep, the budget decides
        // (a lone client, or everyone behind an unconfigured proxy).
        if others.is_empty() || (used as f64) < share {
            return Ok(grant);
        }
        let free_at = oldest.map_or(now, |t| later(t, WINDOW));
        Err(Error::Throttled {
            retry_after: free_at
                .saturating_duration_since(now)
                .max(Duration::from_millis(1)),
            reason: ThrottleReason::ClientShare,
        })
    }

    /// Where `client`'s cold lookup queues in its lane: from when one of
    /// its cold lookups first found no slot in time, if one did lately and
    /// it had no slot in the last minute, so that a caller refused for the
    /// budget who comes back is served before those who came after them;
    /// else from `now`.
    pub(super) fn queues_from(&self, client: &ClientKey, now: Instant) -> Instant {
        if self.slots_lately(Some(client)) > 0 {
            return now;
        }
        self.waiting_since
            .get(client)
            .filter(|&since| now.saturating_duration_since(since) < PLACE_KEPT_FOR)
            .unwrap_or(now)
    }

    /// How many slots of the new callers' lane `client` took in the last
    /// minute (none for a lookup of no client's).
    pub(super) fn slots_lately(&self, client: Option<&ClientKey>) -> usize {
        let Some(client) = client else { return 0 };
        let now = self.clock.now();
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.get(client).map_or(0, |times| lately(times, now))
    }

    /// Of `waiting` (their places and clients, in order), the one a slot of
    /// the new callers' lane goes to: the first of the client with the
    /// fewest slots in the last minute.
    pub(super) fn next_in_turn<P: Copy>(
        &self,
        waiting: impl Iterator<Item = (P, Option<ClientKey>)>,
    ) -> Option<P> {
        let now = self.clock.now();
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let slots = |client: &Option<ClientKey>| {
            client
                .as_ref()
                .and_then(|c| recent.get(c))
                .map_or(0, |times| lately(times, now))
        };
        let mut best: Option<(usize, P)> = None;
        for (place, client) in waiting {
            let had = slots(&client);
            if best.is_none_or(|(fewest, _)| had < fewest) {
                best = Some((had, place));
                if had == 0 {
                    break;
                }
            }
        }
        best.map(|(_, place)| place)
    }

    /// `client` got a slot of the new callers' lane: it counts against its
    /// share for a minute.
    pub(super) fn charge(&self, client: &ClientKey) {
        let now = self.clock.now();
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.entry(*client).or_default().push_back(now);
    }

    /// `client`'s cold lookup, queued from `since`, found no slot in time.
    pub(super) fn found_no_slot(&self, client: &ClientKey, since: Instant) {
        self.waiting_since.entry(*client).or_insert(since);
    }

    /// `client`'s cold lookup got its slot (and was charged for it, if in
    /// the new callers' lane): it spends what let it in there, and its
    /// token is no longer waiting.
    pub(super) fn took(&self, client: &ClientKey, grant: Grant) {
        let now = self.clock.now();
        self.waiting_since.invalidate(client);
        if grant.via == Via::Share {
            return;
        }
        if let Some(record) = self.records.get(client) {
            let mut record = record.lock().unwrap_or_else(|e| e.into_inner());
            record.again.retain(|a| a.question != grant.question);
            self.first_asked.invalidate(&(*client, grant.question));
            match grant.via {
                Via::Credit => record.credit -= 1.0,
                Via::Trickle => record.trickle_at = Some(now),
                Via::Share | Via::Idle => {}
            }
        }
    }

    /// What Figma said of a cold lookup `client` made: refused its token,
    /// or answered.
    pub(super) fn answered(&self, client: &ClientKey, refused: bool) {
        let now = self.clock.now();
        let record = self
            .records
            .get_with(*client, || Arc::new(Mutex::new(Record::new(now))));
        let mut record = record.lock().unwrap_or_else(|e| e.into_inner());
        record.decay(now);
        let was = record.refused_share() >= 1.0 - 1e-9;
        record.cold += 1.0;
        record.refused += f64::from(u8::from(refused));
        if record.refused_share() >= 1.0 - 1e-9 && !was {
            // All suspect: its trickle starts now (the lookups it made were
            // its due).
            record.trickle_at = Some(now);
            tracing::debug!(
                refused = record.refused,
                "a client is a suspect: Figma refused every token it brought lately"
            );
        }
    }

    /// The share of `client`'s cold lookups Figma refused lately.
    #[cfg(test)]
    fn refused_share(&self, client: &ClientKey) -> f64 {
        self.records.get(client).map_or(0.0, |r| {
            let mut r = r.lock().unwrap();
            r.decay(self.clock.now());
            r.refused_share()
        })
    }
}

/// How many of `times` are within the last minute.
fn lately(times: &VecDeque<Instant>, now: Instant) -> usize {
    times.iter().filter(|&&t| within(t, now)).count()
}

fn within(t: Instant, now: Instant) -> bool {
    now.saturating_duration_since(t) < WINDOW
}

fn forget_old(times: &mut VecDeque<Instant>, now: Instant) {
    while times.front().is_some_and(|&t| !within(t, now)) {
        times.pop_front();
    }
}

/// The share of `budget` one more client gets, max-min fair, beside
/// clients that used `others`: what they leave, split evenly among those
/// who want more than an even split (water-filling).
fn max_min_share(budget: f64, others: &[usize]) -> f64 {
    if others.len() > WATER_FILL_UP_TO {
        return budget / (others.len() + 1) as f64;
    }
    let mut used: Vec<usize> = others.to_vec();
    used.sort_unstable();
    let mut left = budget;
    let mut wanting = used.len() + 1;
    for u in used {
        let level = left / wanting as f64;
        if (u as f64) >= level {
            break;
        }
        left -= u as f64;
        wanting -= 1;
    }
    left / wanting as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::MockClock;

    #[test]
    fn a_share_is_what_the_others_leave() {
        assert_eq!(max_min_share(10.0, &[]), 10.0);
        assert_eq!(max_min_share(10.0, &[1, 1]), 8.0);
        assert_eq!(max_min_share(10.0, &[8, 1]), 4.5);
        assert_eq!(max_min_share(12.0, &[9, 9, 9]), 3.0);
        let botnet = vec![1; 2000];
        assert!((max_min_share(2001.0, &botnet) - 1.0).abs() < 1e-9);
    }

    /// The lane of a cold lookup of a new token that gets its slot.
    fn take(clients: &Clients, client: &ClientKey, per_minute: u32) -> Result<Lane, Error> {
        static QUESTIONS: AtomicU64 = AtomicU64::new(1);
        take_question(
            clients,
            client,
            QUESTIONS.fetch_add(1, Ordering::Relaxed),
            per_minute,
        )
    }

    /// The lane of a cold lookup of `question` that gets its slot, charged
    /// as the queue charges it.
    fn take_question(
        clients: &Clients,
        client: &ClientKey,
        question: u64,
        per_minute: u32,
    ) -> Result<Lane, Error> {
        let grant = clients.lane(client, question, per_minute)?;
        if grant.lane == Lane::NewCaller {
            clients.charge(client);
        }
        clients.took(client, grant);
        Ok(grant.lane)
    }

    #[test]
    fn a_lone_client_may_use_the_whole_budget_and_a_flood_its_share() {
        let clock = MockClock::new();
        let clients = Clients::new(&clock.clock());
        let (flood, buyer) = (
            ClientKey::from_bytes("flood"),
            ClientKey::from_bytes("buyer"),
        );
        // Alone: all of the lane, past the budget's size too: no share is
        // kept for no one, and the budget itself refuses what it cannot
        // serve (rate_limited, not too_many_lookups).
        for _ in 0..11 {
            assert_eq!(take(&clients, &flood, 10).unwrap(), Lane::NewCaller);
        }
        // Another client is never held back by the first's use.
        assert_eq!(take(&clients, &buyer, 10).unwrap(), Lane::NewCaller);
        // A minute on, the flood gets what the buyer leaves: 9, not 10.
        clock.advance(WINDOW);
        assert_eq!(take(&clients, &buyer, 10).unwrap(), Lane::NewCaller);
        for _ in 0..9 {
            assert_eq!(take(&clients, &flood, 10).unwrap(), Lane::NewCaller);
        }
        assert!(take(&clients, &flood, 10).is_err());
        // A floor under every share.
        clients.set_floor(12);
        assert!(take(&clients, &flood, 10).is_ok());
        // A lookup that found no slot spends nothing of the share.
        clients.set_floor(0);
        let retrying = ClientKey::from_bytes("retrying");
        for question in 0..20 {
            let lane = clients.lane(&retrying, question, 10).unwrap().lane;
            assert_eq!(lane, Lane::NewCaller);
        }
    }

    #[test]
    fn suspicion_follows_the_share_refused_and_never_locks_out() {
        let clock = MockClock::new();
        let clients = Clients::new(&clock.clock());
        // One forged token is no pattern.
        let office = ClientKey::from_bytes("office");
        clients.answered(&office, true);
        assert_eq!(clients.refused_share(&office), 0.0);
        assert_eq!(take(&clients, &office, 10).unwrap(), Lane::NewCaller);

        // Refused twice, never answered: all suspect, but for a lookup in
        // the new callers' lane a minute, for a token asked about again.
        let attacker = ClientKey::from_bytes("attacker");
        clients.answered(&attacker, true);
        clients.answered(&attacker, true);
        assert_eq!(clients.refused_share(&attacker), 1.0);
        for _ in 0..5 {
            assert_eq!(take(&clients, &attacker, 10).unwrap(), Lane::Suspect);
        }
        clock.advance(TRICKLE_EVERY);
        // New tokens, each sent once, never get the trickle.
        for _ in 0..5 {
            assert_eq!(take(&clients, &attacker, 10).unwrap(), Lane::Suspect);
        }
        // A caller who comes back with theirs gets it, then it waits a
        // minute again.
        let buyer = 7;
        let first = clients.lane(&attacker, buyer, 10).unwrap();
        assert_eq!(first.lane, Lane::Suspect);
        assert_eq!(first.senior_since, None);
        assert_eq!(
            take_question(&clients, &attacker, buyer, 10).unwrap(),
            Lane::NewCaller
        );
        assert_eq!(
            take_question(&clients, &attacker, 8, 10).unwrap(),
            Lane::Suspect
        );
        assert_eq!(
            take_question(&clients, &attacker, 8, 10).unwrap(),
            Lane::Suspect
        );
        clock.advance(TRICKLE_EVERY);
        // Of two tokens asked about again, the one asked about first goes
        // first, whatever the flood sends meanwhile.
        let lanes: Vec<Lane> = [20, 21, 22, 21, 20, 21]
            .into_iter()
            .map(|question| clients.lane(&attacker, question, 10).unwrap().lane)
            .collect();
        let (s, n) = (Lane::Suspect, Lane::NewCaller);
        assert_eq!(lanes, [s, s, s, n, n, s]);

        // A flood of new tokens between a buyer's two asks does not make
        // the buyer's token forgotten: it is still the senior one.
        let flooded = ClientKey::from_bytes("flooded");
        clients.answered(&flooded, true);
        clients.answered(&flooded, true);
        clock.advance(TRICKLE_EVERY);
        let buyer = 1_000_000;
        assert_eq!(
            clients.lane(&flooded, buyer, 10).unwrap().lane,
            Lane::Suspect
        );
        for question in 2_000_000..2_001_000 {
            assert_eq!(
                clients.lane(&flooded, question, 10).unwrap().lane,
                Lane::Suspect
            );
        }
        let again = clients.lane(&flooded, buyer, 10).unwrap();
        assert_eq!(again.lane, Lane::NewCaller);
        assert!(again.senior_since.is_some());

        // An address where honest users meet an attacker: half refused, so
        // half its cold lookups go on, the rest wait for idle slots.
        let proxy = ClientKey::from_bytes("proxy");
        for refused in [true, false, true, false] {
            clients.answered(&proxy, refused);
        }
        // (The mock clock is real time plus its offset: the microseconds
        // between the four answers decay the first ones a hair.)
        assert!((clients.refused_share(&proxy) - 0.5).abs() < 1e-6);
        let lanes: Vec<Lane> = (0..6)
            .map(|_| take(&clients, &proxy, 100).unwrap())
            .collect();
        let new_callers = lanes.iter().filter(|&&l| l == Lane::NewCaller).count();
        assert_eq!(new_callers, 3, "{lanes:?}");

        // Suspicion fades unless the refusals go on.
        clock.advance(HALF_LIFE * 2);
        clients.answered(&attacker, false);
        assert!(clients.refused_share(&attacker) < 0.5);
        clock.advance(HALF_LIFE * 6);
        assert_eq!(clients.refused_share(&attacker), 0.0);
    }
}
