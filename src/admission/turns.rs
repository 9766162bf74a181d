//! New callers' turns at the budget replicas share: that budget has no
//! queue (whoever asks Redis first gets the slot), so on each replica the
//! new callers' lookups take turns before they ask it, one at a time,
//! client by client ([`Clients::next_in_turn`]), each client with only so
//! many waiting. A flood from one client then polls the shared budget
//! with one lookup at most, in its turn, never with all of its lookups
//! at once ahead of a newcomer.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use super::{
    fair::Clients,
    rate::{has_its_fill, Granted, Waiter},
};
use crate::{
    error::{Error, ThrottleReason},
    ClientKey,
};

/// How often a lookup waiting for its turn looks again, besides being
/// woken when it is given one.
const POLL: Duration = Duration::from_millis(20);

/// The new callers' turns on this replica.
#[derive(Default)]
pub(super) struct Turns {
    state: Mutex<State>,
    arrivals: AtomicU64,
}

#[derive(Default)]
struct State {
    /// The lookups waiting for a turn, by arrival.
    waiting: BTreeMap<u64, Waiter>,
    /// Whether a lookup has the turn now.
    held: bool,
}

/// The turn to ask the shared budget; the next lookup gets it when this is
/// dropped.
pub(super) struct Turn<'a> {
    turns: &'a Turns,
    fair: &'a Clients,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut state = self.turns.state();
        state.held = false;
        serve(&mut state, self.fair);
    }
}

/// A lookup in line for a turn; it leaves however the wait ends.
struct InLine<'a> {
    turns: &'a Turns,
    fair: &'a Clients,
    arrival: u64,
    granted: Arc<Granted>,
    /// Set once the turn it was given is handed to its caller.
    handed: bool,
}

impl<'a> InLine<'a> {
    /// The turn, if it was given one; else it leaves the line.
    fn turn_or_leave(&mut self) -> Option<Turn<'a>> {
        let mut state = self.turns.state();
        if state.waiting.remove(&self.arrival).is_some() {
            return None;
        }
        drop(state);
        self.handed = true;
        Some(Turn {
            turns: self.turns,
            fair: self.fair,
        })
    }
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        if self.handed {
            return;
        }
        let mut state = self.turns.state();
        // Given a turn it will never use (its caller left): the next one.
        if state.waiting.remove(&self.arrival).is_none() && self.granted.is_taken() {
            state.held = false;
            serve(&mut state, self.fair);
        }
    }
}

/// Gives the turn to the next waiting lookup, if nobody holds it.
fn serve(state: &mut State, fair: &Clients) {
    if state.held {
        return;
    }
    let waiting = state
        .waiting
        .iter()
        .map(|(arrival, w)| (*arrival, w.client));
    let Some(next) = fair.next_in_turn(waiting) else {
        return;
    };
    if let Some(waiter) = state.waiting.remove(&next) {
        state.held = true;
        waiter.granted.grant();
    }
}

impl std::fmt::Debug for Turns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Turns")
    }
}

impl Turns {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for `client`'s turn until `give_up_at` (real time); refused at
    /// once when `client` already has `per_client` lookups waiting.
    pub(super) async fn take<'a>(
        &'a self,
        client: ClientKey,
        give_up_at: Instant,
        fair: &'a Clients,
        per_client: usize,
    ) -> Result<Turn<'a>, Error> {
        let granted = Arc::new(Granted::default());
        let arrival = self.arrivals.fetch_add(1, Ordering::Relaxed);
        {
            let mut state = self.state();
            if has_its_fill(state.waiting.values(), &client, per_client) {
                return Err(Error::Throttled {
                    retry_after: give_up_at.saturating_duration_since(Instant::now()),
                    reason: ThrottleReason::ClientShare,
                });
            }
            state.waiting.insert(
                arrival,
                Waiter {
                    granted: granted.clone(),
                    client: Some(client),
                },
            );
            serve(&mut state, fair);
        }
        let mut in_line = InLine {
            turns: self,
            fair,
            arrival,
            granted,
            handed: false,
        };
        loop {
            let left = give_up_at.saturating_duration_since(Instant::now());
            if in_line.granted.is_taken() || left.is_zero() {
                return match in_line.turn_or_leave() {
                    Some(turn) => Ok(turn),
                    None => Err(Error::Throttled {
                        retry_after: POLL,
                        reason: ThrottleReason::BudgetExhausted,
                    }),
                };
            }
            tokio::select! {
                () = tokio::time::sleep(left.min(POLL)) => {}
                () = in_line.granted.told.notified() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::MockClock;

    #[tokio::test]
    async fn a_newcomer_gets_the_next_turn_before_a_flood_and_a_flood_waits_its_share() {
        let clock = MockClock::new();
        let fair = Clients::new(&clock.clock());
        let turns = Turns::default();
        let (flood, newcomer) = (ClientKey::from_bytes("flood"), ClientKey::from_bytes("new"));
        let soon = Instant::now() + Duration::from_secs(5);
        // The flood had a slot lately, and holds the turn.
        fair.charge(&flood);
        let held = turns.take(flood, soon, &fair, 2).await.unwrap();
        // Two more of its lookups wait; a third is refused at once.
        let first = turns.take(flood, soon, &fair, 2);
        let second = turns.take(flood, soon, &fair, 2);
        let newcomer_turn = turns.take(newcomer, soon, &fair, 2);
        tokio::pin!(first, second, newcomer_turn);
        // Let each join the line.
        for _ in 0..3 {
            tokio::select! {
                biased;
                _ = &mut first => panic!("the turn is held"),
                _ = &mut second => panic!("the turn is held"),
                _ = &mut newcomer_turn => panic!("the turn is held"),
                () = tokio::task::yield_now() => {}
            }
        }
        let refused = turns.take(flood, soon, &fair, 2).await;
        assert!(
            matches!(
                refused,
                Err(Error::Throttled {
                    reason: ThrottleReason::ClientShare,
                    ..
                })
            ),
            "{:?}",
            refused.err()
        );
        // The turn comes free: the newcomer, who came last, gets it.
        drop(held);
        let turn = tokio::select! {
            biased;
            turn = &mut newcomer_turn => turn.unwrap(),
            _ = &mut first => panic!("the flood went first"),
            _ = &mut second => panic!("the flood went first"),
        };
        drop(turn);
        // Then the flood, one lookup at a time.
        let turn = (&mut first).await.unwrap();
        drop(turn);
        (&mut second).await.unwrap();
    }
}
