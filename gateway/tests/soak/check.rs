//! The promises, checked on every response and every second: who may be
//! let in, who must not be refused, Figma's budget and back-offs, answers
//! in time and in Figma's envelope. The first violation names the request.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::{Duration, Instant},
};

/// Who calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// PAID the whole run.
    Buyer,
    /// TRIAL the whole run.
    Trial,
    /// UNPAID the whole run.
    Never,
    /// Bought and refunded during the run.
    Flip,
    /// A token Figma never issued.
    Forged,
    /// A token that is not one (too long, bad characters).
    Malformed,
    /// Sends its request and hangs up.
    Disconnect,
}

/// The answers' lifetimes the replicas run with.
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    pub paid: Duration,
    pub trial: Duration,
    pub grace: Duration,
}

/// What came back for one request.
pub struct Outcome {
    pub replica: String,
    pub caller: Kind,
    pub user: Option<String>,
    pub sent: Instant,
    pub answered: Instant,
    /// The status, the answer's age (`X-Figma-Answer-Age`) and the body;
    /// or why there was no answer.
    pub reply: Result<(u16, Option<u64>, String), String>,
}

/// A user's status over the run: from each instant, whether Figma says
/// PAID or TRIAL, and how long such an answer lives.
type History = Vec<(Instant, bool, Duration)>;

pub struct Checker {
    pub started: Instant,
    life: Lifetimes,
    deadline: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    history: HashMap<String, History>,
    /// When Figma was made to fail (any fault that stale answers and the
    /// breaker are for), as windows; the last may still be open.
    figma_faults: Vec<(Instant, Option<Instant>)>,
    /// When Redis was made to fail, as windows.
    redis_faults: Vec<(Instant, Option<Instant>)>,
    /// The freshest answer each replica is known to hold for each user:
    /// when Figma gave it.
    held: HashMap<(String, String), Instant>,
    pub requests: usize,
    statuses: BTreeMap<u16, usize>,
    refusals: BTreeMap<String, usize>,
    /// Refusals of buyers (PAID or TRIAL the whole run), by reason.
    buyers_refused: BTreeMap<String, usize>,
    lost: BTreeMap<String, usize>,
    slowest: Duration,
    violations: Vec<String>,
    back_offs_checked: usize,
    back_offs_unchecked: usize,
    budget_max_window: usize,
    /// The refresh cycle each replica last stated (its health), and the
    /// longest any stated during the run.
    stated_cycle: HashMap<String, Duration>,
    longest_cycle: Duration,
    /// Buyers let in on an answer past its lifetime, within the cycle.
    let_in_unverified: usize,
    /// Each fault injected: when, and what.
    timeline: Vec<(Instant, &'static str)>,
}

impl Checker {
    pub fn new(life: Lifetimes, deadline: Duration) -> Self {
        Self {
            started: Instant::now(),
            life,
            deadline,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn at(&self, t: Instant) -> String {
        format!(
            "t+{:.3}s",
            t.saturating_duration_since(self.started).as_secs_f64()
        )
    }

    /// `user` is PAID (`paid`, or TRIAL: `trial`) from now on, or not.
    pub fn set_status(&self, user: &str, paid: bool, trial: bool) {
        let life = if trial {
            self.life.trial
        } else {
            self.life.paid
        };
        self.state()
            .history
            .entry(user.to_owned())
            .or_default()
            .push((Instant::now(), paid || trial, life));
    }

    /// `replica` states a refresh cycle of `cycle` (its health says so).
    pub fn stated_cycle(&self, replica: &str, cycle: Duration) {
        let mut s = self.state();
        s.longest_cycle = s.longest_cycle.max(cycle);
        s.stated_cycle.insert(replica.to_owned(), cycle);
    }

    /// How long past Figma's answer a buyer may be let in on it while its
    /// refresh waits, by `cycle`: its lifetime, or the cycle if longer,
    /// capped at the lifetime plus `max_unverified` (the gateway's default
    /// of an hour).
    fn unverified_window(life: Duration, cycle: Duration) -> Duration {
        life.max(cycle.min(life + Duration::from_secs(3600)))
    }

    /// A fault was injected, for the timeline a failure prints.
    pub fn note(&self, what: &'static str) {
        self.state().timeline.push((Instant::now(), what));
    }

    /// The faults injected up to `secs` seconds before the first violation.
    pub fn timeline(&self) -> String {
        let s = self.state();
        s.timeline
            .iter()
            .map(|(at, what)| format!("{} {what}", self.at(*at)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn figma_fault(&self, start: bool) {
        window(&mut self.state().figma_faults, start);
    }

    pub fn redis_fault(&self, start: bool) {
        window(&mut self.state().redis_faults, start);
    }

    /// A breach found elsewhere (a secret in a log, memory that grew).
    pub fn violation(&self, what: String) {
        self.state().violations.push(what);
    }

    pub fn violations(&self) -> usize {
        self.state().violations.len()
    }

    pub fn first_violation(&self) -> Option<String> {
        self.state().violations.first().cloned()
    }

    pub fn record(&self, o: Outcome) {
        let mut s = self.state();
        s.requests += 1;
        let took = o.answered.saturating_duration_since(o.sent);
        s.slowest = s.slowest.max(took);
        let name = format!(
            "request {} to {} by a {:?} caller{} sent at {}",
            s.requests,
            o.replica,
            o.caller,
            o.user
                .as_deref()
                .map(|u| format!(" (user {u})"))
                .unwrap_or_default(),
            self.at(o.sent)
        );
        if took > self.deadline {
            s.violations.push(format!(
                "{name}: answered after {took:?}, past the deadline of {:?}",
                self.deadline
            ));
        }
        let (status, age, body) = match o.reply {
            Ok(reply) => reply,
            Err(why) => {
                *s.lost.entry(why).or_default() += 1;
                return;
            }
        };
        *s.statuses.entry(status).or_default() += 1;
        if status == 200 {
            self.check_grant(
                &mut s,
                &name,
                &o.replica,
                o.caller,
                o.user.as_deref(),
                o.sent,
                o.answered,
                age,
            );
            return;
        }
        // A refusal: Figma's envelope, never a 500.
        let envelope = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .filter(|v| v["error"] == true && v["status"] == status);
        let reason = envelope
            .as_ref()
            .and_then(|v| v["reason"].as_str().map(str::to_owned));
        // What the message says, numbers left out, for the summary.
        let said: String = envelope
            .as_ref()
            .and_then(|v| v["message"].as_str())
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .take(70)
            .collect();
        let Some(reason) = reason else {
            s.violations.push(format!(
                "{name}: {status} without Figma's envelope: {body:.200}"
            ));
            return;
        };
        if status == 500 {
            s.violations.push(format!("{name}: 500 ({reason})"));
        }
        *s.refusals.entry(reason.clone()).or_default() += 1;
        if matches!(o.caller, Kind::Buyer | Kind::Trial) {
            *s.buyers_refused
                .entry(format!("{reason}: {said}"))
                .or_default() += 1;
            let user = o.user.as_deref().unwrap_or_default();
            let life = if o.caller == Kind::Trial {
                self.life.trial
            } else {
                self.life.paid
            };
            let stated = s.stated_cycle.get(&o.replica).copied().unwrap_or_default();
            if let Some(&fetched) = s.held.get(&(o.replica.clone(), user.to_owned())) {
                let slack = Duration::from_millis(500);
                if o.sent + slack < fetched + life {
                    s.violations.push(format!(
                        "{name}: refused ({status} {reason}) with a fresh answer (Figma gave it at {})",
                        self.at(fetched)
                    ));
                } else if reason == "rate_limited"
                    && o.sent + slack < fetched + Self::unverified_window(life, stated)
                    && !s
                        .redis_faults
                        .iter()
                        .any(|(_, to)| to.is_none_or(|to| to + Duration::from_secs(3) >= fetched))
                {
                    // Past its lifetime but within the cycle the replica
                    // states, a known buyer's answer lets them in while its
                    // refresh waits for a slot (unless Redis failed since:
                    // invalidations may have been missed, so it may not).
                    s.violations.push(format!(
                        "{name}: refused rate_limited while its answer (Figma gave it at {}) was within the refresh cycle of {:?} the replica states",
                        self.at(fetched),
                        stated
                    ));
                } else if o.sent + slack < fetched + life + self.life.grace
                    && reason == "figma_unavailable"
                {
                    s.violations.push(format!(
                        "{name}: refused ({status} {reason}) while Figma failed, with an answer in its grace (Figma gave it at {})",
                        self.at(fetched)
                    ));
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn check_grant(
        &self,
        s: &mut State,
        name: &str,
        replica: &str,
        caller: Kind,
        user: Option<&str>,
        sent: Instant,
        answered: Instant,
        age: Option<u64>,
    ) {
        let Some(user) = user else {
            s.violations.push(format!("{name}: let in"));
            return;
        };
        let Some(age) = age else {
            s.violations.push(format!(
                "{name}: let in without saying how old the answer was"
            ));
            return;
        };
        // Figma gave the answer between `age + 1` and `age` seconds before.
        let fetched = answered
            .checked_sub(Duration::from_secs(age + 1))
            .unwrap_or(self.started);
        let held = s
            .held
            .entry((replica.to_owned(), user.to_owned()))
            .or_insert(fetched);
        *held = (*held).max(fetched);
        let life = if caller == Kind::Trial {
            self.life.trial
        } else {
            self.life.paid
        };
        if Duration::from_secs(age) > life {
            s.let_in_unverified += 1;
        }
        let history = s.history.get(user).map(Vec::as_slice).unwrap_or_default();
        if let Err(why) = self.may_be_let_in(s, history, sent, answered) {
            s.violations
                .push(format!("{name} ({caller:?}): let in, but {why}"));
        }
    }

    /// Whether a user with this history may be let in by a request sent at
    /// `sent` and answered at `answered`: PAID or TRIAL at some point of
    /// it, or within an answer's lifetime of having stopped being so, or
    /// the refresh cycle a replica stated if longer (plus the grace, if
    /// Figma failed meanwhile).
    fn may_be_let_in(
        &self,
        s: &State,
        history: &[(Instant, bool, Duration)],
        sent: Instant,
        answered: Instant,
    ) -> Result<(), String> {
        let paid_at_sent = history
            .iter()
            .rev()
            .find(|(from, ..)| *from <= sent)
            .is_some_and(|(_, paid, _)| *paid);
        let paid_since = history
            .iter()
            .any(|(from, paid, _)| *paid && *from > sent && *from <= answered);
        if paid_at_sent || paid_since {
            return Ok(());
        }
        // Not PAID or TRIAL while the request ran: when did it stop?
        let Some(stopped) = history
            .windows(2)
            .rev()
            .find(|w| w[0].1 && !w[1].1 && w[1].0 <= sent)
        else {
            return Err("Figma never said PAID or TRIAL for this user".to_owned());
        };
        let (refunded, life) = (stopped[1].0, stopped[0].2);
        let life = Self::unverified_window(life, s.longest_cycle);
        let slack = Duration::from_secs(1);
        if sent <= refunded + life + slack {
            return Ok(());
        }
        let figma_failed = s
            .figma_faults
            .iter()
            .any(|(from, to)| *from <= answered && to.is_none_or(|to| to >= refunded));
        if figma_failed && sent <= refunded + life + self.life.grace + slack {
            return Ok(());
        }
        Err(format!(
            "refunded at {}: past the answer's lifetime{}",
            self.at(refunded),
            if figma_failed { " and grace" } else { "" }
        ))
    }

    /// Figma's side: no 60-second window holds more calls than the budget,
    /// and no call comes during a back-off Figma asked for (while Redis,
    /// which shares back-offs between replicas, was up).
    pub fn check_figma(
        &self,
        arrivals: &[Instant],
        back_offs: &[(Instant, Duration)],
        budget: usize,
    ) {
        let mut s = self.state();
        let minute = Duration::from_secs(60);
        let mut end = 0;
        let mut worst = 0;
        for (i, start) in arrivals.iter().enumerate() {
            while end < arrivals.len() && arrivals[end] < *start + minute {
                end += 1;
            }
            worst = worst.max(end - i);
            if end - i > budget {
                // Calls by 5 s within that minute, to see where they came.
                let mut by_five = [0usize; 12];
                for t in &arrivals[i..end] {
                    by_five[(t.duration_since(*start).as_secs() / 5).min(11) as usize] += 1;
                }
                let what = format!(
                    "{} calls to Figma in the minute from {}: more than the budget of {budget} (by 5 s: {by_five:?})",
                    end - i,
                    self.at(*start)
                );
                if !s.violations.contains(&what) {
                    s.violations.push(what);
                }
                break;
            }
        }
        s.budget_max_window = s.budget_max_window.max(worst);
        // Calls already on their way when the 429 was answered are not
        // breaches: allow 200 ms.
        let mut checked = 0;
        let mut unchecked = 0;
        for (at, back_off) in back_offs {
            let quiet_from = *at + Duration::from_millis(200);
            let until = *at + *back_off;
            let redis_down = s.redis_faults.iter().any(|(from, to)| {
                // Replicas notice Redis back within a few seconds.
                *from <= until && to.is_none_or(|to| to + Duration::from_secs(3) >= *at)
            });
            if redis_down {
                unchecked += 1;
                continue;
            }
            checked += 1;
            if let Some(during) = arrivals.iter().find(|t| **t > quiet_from && **t < until) {
                let what = format!(
                    "a call to Figma at {} during the back-off of {back_off:?} Figma asked for at {}",
                    self.at(*during),
                    self.at(*at)
                );
                if !s.violations.contains(&what) {
                    s.violations.push(what);
                }
            }
        }
        s.back_offs_checked = checked;
        s.back_offs_unchecked = unchecked;
    }

    /// The parts of the summary line the checker knows.
    pub fn summary(&self) -> String {
        let s = self.state();
        format!(
            "statuses={:?} refusals={:?} buyers_refused={:?} lost={:?} slowest={:.2}s budget_max_minute={} longest_cycle={}s let_in_unverified={} back_offs_checked={} back_offs_unchecked={} violations={}",
            s.statuses,
            s.refusals,
            s.buyers_refused,
            s.lost,
            s.slowest.as_secs_f64(),
            s.budget_max_window,
            s.longest_cycle.as_secs(),
            s.let_in_unverified,
            s.back_offs_checked,
            s.back_offs_unchecked,
            s.violations.len()
        )
    }

    pub fn requests(&self) -> usize {
        self.state().requests
    }
}

fn window(windows: &mut Vec<(Instant, Option<Instant>)>, start: bool) {
    let now = Instant::now();
    if start {
        windows.push((now, None));
    } else if let Some((_, end @ None)) = windows.last_mut() {
        *end = Some(now);
    }
}
