//! Building a [`RedisTier`]: where Redis is, how long to wait for it, and
//! how this replica counts among those sharing the budget.

use std::{
    fmt,
    sync::{atomic::AtomicU32, Arc, Mutex},
    time::Duration,
};

use ::redis::{aio::ConnectionManager, Script};

use super::{
    scripts::{self, BACK_OFF, UNLOCK},
    Health, RedisTier, TierInner,
};

/// Builds a [`RedisTier`].
///
/// ```
/// use std::time::Duration;
/// use figma_paywall::redis::RedisTier;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), figma_paywall::redis::RedisTierError> {
/// let tier = RedisTier::builder("redis://127.0.0.1:6379")
///     .prefix("my-plugin:")
///     .timeout(Duration::from_millis(50))
///     .build()?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct RedisTierBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
    lock_ttl: Duration,
    replicas: u32,
    replica_name: Option<String>,
    /// The certificate authority to trust for `rediss://`, in PEM.
    root_certificate: Option<Vec<u8>>,
}

impl fmt::Debug for RedisTierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password.
        f.debug_struct("RedisTierBuilder")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("lock_ttl", &self.lock_ttl)
            .field("replicas", &self.replicas)
            .field("replica_name", &self.replica_name)
            .field("root_certificate", &self.root_certificate.is_some())
            .finish_non_exhaustive()
    }
}

impl RedisTierBuilder {
    /// For a `rediss://` URL, trust the certificate authority in `pem`
    /// instead of the public ones (a Redis you run with your own
    /// certificates). Managed Redis (Upstash, ElastiCache with in-transit
    /// encryption, Azure Cache, Memorystore) has certificates the public
    /// authorities sign: give it nothing. The gateway reads it from the file
    /// `FIGMA_PAYWALL_REDIS_CA` names.
    ///
    /// ```no_run
    /// use figma_paywall::redis::RedisTier;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = std::fs::read("/etc/redis/ca.pem")?;
    /// let tier = RedisTier::builder("rediss://:password@redis.internal:6380")
    ///     .root_certificate(ca)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificate = Some(pem.into());
        self
    }

    /// Prefix of every key and of the pub/sub channel; default
    /// `figma-paywall:v1:`. Replicas that share answers share a prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long any Redis command may take before the lookup goes on
    /// without Redis; default 100 ms.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long a replica holds the lock on a cold key while it asks Figma,
    /// and so the longest other replicas wait for it; default 6 s (the
    /// client's default timeout plus a second).
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }

    /// How many replicas share Figma's budget, at least (default 1, at most
    /// 64).
    ///
    /// Every replica tells Redis it is alive every second. While Redis is
    /// unreachable, a replica keeps to its share of the budget: the budget
    /// divided by the replicas Redis heard from in the last minute, or by
    /// this if more. Meanwhile the replicas that reach Redis leave the
    /// shares of those it has not heard from for 2 s unspent, counting this
    /// many replicas at least.
    ///
    /// - **Set it to the number of replicas you run** where that number is
    ///   fixed: a replica that starts while Redis is down, or stays cut off
    ///   from it for more than a minute, then spends no more than its
    ///   share. The price: with fewer running, the shares of the missing
    ///   ones stay unspent.
    /// - **Leave it at 1 where the number changes** (autoscaling): replicas
    ///   are counted from what Redis hears, and one cut off for more than a
    ///   minute spends its share on top of the others'.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use figma_paywall::redis::RedisTier;
    ///
    /// let tier = RedisTier::builder("redis://127.0.0.1:6379").replicas(3).build()?;
    /// # Ok(()) }
    /// ```
    pub fn replicas(mut self, replicas: u32) -> Self {
        self.replicas = replicas.clamp(1, scripts::MAX_REPLICAS);
        self
    }

    /// This replica's name among those sharing the budget; default a random
    /// one. Redis takes a replica it has not heard from for 2 s for one
    /// spending its share without Redis, and keeps that share for it until
    /// it has not been heard from for a minute (and the replicas that
    /// counted it, which remember a minute of counts in case a Redis
    /// restart forgets them, have stopped: up to two minutes in all). A
    /// replica killed and started again under a new name costs the others
    /// its share for that long. Started again under the same name (from a
    /// StatefulSet's pod name, or a host and port), it takes its own place
    /// at once. Names must differ between replicas running at the same
    /// time: two under one name are counted as one.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use figma_paywall::redis::RedisTier;
    ///
    /// let tier = RedisTier::builder("redis://127.0.0.1:6379")
    ///     .replicas(3)
    ///     .replica_name(std::env::var("POD_NAME")?)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn replica_name(mut self, name: impl Into<String>) -> Self {
        self.replica_name = Some(name.into());
        self
    }

    /// Builds the tier, inside a Tokio runtime. Connects lazily: Redis need
    /// not be up yet. Fails on a malformed URL, or an empty
    /// [`replica_name`](Self::replica_name) or one over 200 bytes.
    pub fn build(self) -> Result<RedisTier, RedisTierError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RedisTierError::NoRuntime);
        }
        let replica = match self.replica_name {
            Some(name) if name.is_empty() || name.len() > 200 => {
                return Err(RedisTierError::ReplicaName)
            }
            Some(name) => name,
            None => format!("{:032x}", rand::random::<u128>()),
        };
        let client = match self.root_certificate {
            None => ::redis::Client::open(self.url.as_str()).map_err(RedisTierError::redis)?,
            Some(pem) => ::redis::Client::build_with_tls(
                self.url.as_str(),
                ::redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
            .map_err(RedisTierError::redis)?,
        };
        let config = ::redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(RedisTierError::redis)?;
        Ok(RedisTier {
            inner: Arc::new(TierInner {
                client,
                conn,
                prefix: self.prefix,
                timeout: self.timeout,
                lock_ttl: self.lock_ttl,
                replica,
                gcra: Script::new(&scripts::gcra()),
                heartbeat: Script::new(&scripts::heartbeat()),
                // At least 1, at most 64: see `replicas`.
                replicas: AtomicU32::new(self.replicas),
                replicas_floor: self.replicas,
                unlock: Script::new(UNLOCK),
                back_off: Script::new(BACK_OFF),
                reserve_credits: Script::new(super::counts::RESERVE),
                settle_credits: Script::new(super::counts::SETTLE),
                offline: super::counts::offline_counts(),
                health: Mutex::new(Health::default()),
            }),
        })
    }
}

impl RedisTier {
    /// Starts a builder for the Redis server at `url`
    /// (`redis://[:password@]host:port[/db]`, or `rediss://` for TLS).
    pub fn builder(url: impl Into<String>) -> RedisTierBuilder {
        RedisTierBuilder {
            url: url.into(),
            prefix: "figma-paywall:v1:".to_owned(),
            timeout: Duration::from_millis(100),
            lock_ttl: Duration::from_secs(6),
            replicas: 1,
            replica_name: None,
            root_certificate: None,
        }
    }
}

/// Why the Redis tier could not be built, or Redis did not answer
/// [`RedisTier::ping`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisTierError {
    /// [`RedisTierBuilder::build`] was called outside a Tokio runtime:
    /// build the tier inside `#[tokio::main]` or a runtime's `block_on`.
    #[error("RedisTier::build must be called inside a Tokio runtime")]
    NoRuntime,
    /// The replica's name ([`RedisTierBuilder::replica_name`]) is empty or
    /// over 200 bytes.
    #[error("the replica's name must be 1 to 200 bytes")]
    ReplicaName,
    /// Redis did not answer a ping within this long.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The URL or the certificate was refused, or Redis answered with an
    /// error; the source is the Redis library's error.
    #[error("Redis: {0}")]
    Redis(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl RedisTierError {
    pub(super) fn redis(e: ::redis::RedisError) -> Self {
        Self::Redis(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_replica_name_must_be_one_to_200_bytes() {
        let builder = || RedisTier::builder("redis://127.0.0.1:1");
        for bad in [String::new(), "x".repeat(201)] {
            let e = builder().replica_name(bad).build().unwrap_err();
            assert!(e.to_string().contains("1 to 200 bytes"), "{e}");
        }
        let tier = builder().replica_name("x".repeat(200)).build().unwrap();
        assert_eq!(tier.inner.replica.len(), 200);
        // Unnamed, a random name of its own.
        assert_ne!(
            builder().build().unwrap().inner.replica,
            builder().build().unwrap().inner.replica
        );
    }
}
