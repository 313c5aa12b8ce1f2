//! argon2id password hashing on a fixed set of hashing threads.
//!
//! argon2id with OWASP's parameters needs 19 MiB of working memory and ~16 ms
//! of one core per check. Running it on tokio's blocking pool (up to 512
//! threads) would let a login storm grow memory without bound, so checks run
//! on `threads` dedicated threads (one per core, at a lower scheduling
//! priority than the reactor), each reusing one preallocated memory block.
//! In front of them is a queue whose budget is *expected wait*: a check is
//! admitted while (queued + running) × measured hash time ÷ threads stays
//! within the budget; beyond it the caller gets [`Error::Overloaded`] with
//! the wait to retry after. Every admitted check is answered.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use tokio::sync::oneshot;

use crate::config::HashParams;
use crate::error::{Error, Result};
use crate::metrics::Histogram;

/// Salt length of new hashes (bytes).
const SALT_LEN: usize = 16;
/// Output length of new hashes (bytes).
const OUTPUT_LEN: usize = 32;
/// Weight of the newest sample in the moving average of hash time.
const EWMA_WEIGHT: f64 = 0.2;
/// Hard cap on queued checks, whatever the budget says.
const MAX_QUEUE: usize = 100_000;
/// How much nicer than the reactor the hashing threads run.
const HASH_THREAD_NICE: i32 = 5;

/// Hashes `password` with `params` and a random salt into a PHC string.
///
/// # Errors
/// Invalid parameters.
pub fn hash_password(params: HashParams, password: &[u8]) -> Result<String> {
    let mut memory = Vec::new();
    hash_with_memory(params, password, &mut memory)
}

fn argon(params: HashParams, output_len: usize) -> Result<Argon2<'static>> {
    let p = Params::new(
        params.m_cost,
        params.t_cost,
        params.p_cost,
        Some(output_len),
    )
    .map_err(|e| Error::Config(format!("bad argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, p))
}

fn ensure_blocks(memory: &mut Vec<Block>, n: usize) -> &mut [Block] {
    if memory.len() < n {
        memory.resize(n, Block::new());
    }
    &mut memory[..n]
}

fn hash_with_memory(
    params: HashParams,
    password: &[u8],
    memory: &mut Vec<Block>,
) -> Result<String> {
    let a2 = argon(params, OUTPUT_LEN)?;
    let mut salt = [0u8; SALT_LEN];
    rand::fill(&mut salt);
    let mut out = [0u8; OUTPUT_LEN];
    let n = a2.params().block_count();
    a2.hash_password_into_with_memory(password, &salt, &mut out, ensure_blocks(memory, n))
        .map_err(|e| Error::Internal(format!("argon2: {e}")))?;
    Ok(format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.m_cost,
        params.t_cost,
        params.p_cost,
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(out)
    ))
}

/// Checks `password` against a PHC string, with the parameters stored in it.
/// A malformed PHC string is a mismatch (and logged).
pub fn verify_password(password: &[u8], phc: &str) -> bool {
    verify_with_memory(password, phc, &mut Vec::new())
}

fn verify_with_memory(password: &[u8], phc: &str, memory: &mut Vec<Block>) -> bool {
    match try_verify(password, phc, memory) {
        Ok(ok) => ok,
        Err(e) => {
            tracing::error!(error = %e, "stored password hash cannot be checked");
            false
        }
    }
}

fn try_verify(password: &[u8], phc: &str, memory: &mut Vec<Block>) -> Result<bool, String> {
    let parsed = PasswordHash::new(phc).map_err(|e| e.to_string())?;
    let algorithm = Algorithm::try_from(parsed.algorithm.as_str()).map_err(|e| e.to_string())?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).map_err(|e| e.to_string())?,
        None => Version::default(),
    };
    let params = Params::try_from(&parsed).map_err(|e| e.to_string())?;
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return Err("PHC string without salt or hash".into());
    };
    let a2 = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    let n = a2.params().block_count();
    a2.hash_password_into_with_memory(password, salt, &mut out, ensure_blocks(memory, n))
        .map_err(|e| e.to_string())?;
    Ok(constant_time_eq(&out, expected.as_bytes()))
}

/// Compares without an early exit on the first differing byte.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// The hashing threads and their admission-controlled queue. Cheap to clone.
#[derive(Clone)]
pub struct Hasher {
    inner: Arc<Inner>,
}

struct Inner {
    /// Jobs waiting for a thread; bounded by the budget (and [`MAX_QUEUE`]).
    queue: Mutex<VecDeque<Job>>,
    /// Wakes an idle hashing thread.
    ready: Condvar,
    /// Checks admitted and not yet finished (queued + running).
    depth: AtomicUsize,
    /// Moving average of one check's duration, in nanoseconds.
    avg_ns: AtomicU64,
    threads: usize,
    budget: Duration,
    stopping: AtomicBool,
    /// Time from admission to start on a thread.
    wait: Histogram,
    /// Time of one check on its thread.
    hash_time: Histogram,
}

impl Hasher {
    /// Starts `threads` hashing threads. `calibration` is one measured hash
    /// time, the starting point of the moving average.
    pub fn start(threads: usize, budget: Duration, calibration: Duration) -> Self {
        let threads = threads.max(1);
        let inner = Arc::new(Inner {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            depth: AtomicUsize::new(0),
            avg_ns: AtomicU64::new(
                u64::try_from(calibration.as_nanos())
                    .unwrap_or(u64::MAX)
                    .max(1),
            ),
            threads,
            budget,
            stopping: AtomicBool::new(false),
            wait: Histogram::new(),
            hash_time: Histogram::new(),
        });
        for i in 0..threads {
            let inner = inner.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("wsgate-hash-{i}"))
                .spawn(move || worker(&inner));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a hashing thread");
            }
        }
        Self { inner }
    }

    /// Number of hashing threads.
    pub fn threads(&self) -> usize {
        self.inner.threads
    }

    /// Checks admitted and not yet answered.
    pub fn depth(&self) -> usize {
        self.inner.depth.load(Ordering::Relaxed)
    }

    /// Current estimate of one check's duration.
    pub fn avg_hash_time(&self) -> Duration {
        Duration::from_nanos(self.inner.avg_ns.load(Ordering::Relaxed))
    }

    /// Expected wait of a check admitted now.
    pub fn expected_wait(&self) -> Duration {
        self.wait_for_depth(self.depth() + 1)
    }

    fn wait_for_depth(&self, depth: usize) -> Duration {
        let per = self.inner.avg_ns.load(Ordering::Relaxed) as f64;
        Duration::from_nanos((depth as f64 * per / self.inner.threads as f64) as u64)
    }

    /// Histograms for metrics: (queue wait, hash time).
    pub fn histograms(&self) -> (&Histogram, &Histogram) {
        (&self.inner.wait, &self.inner.hash_time)
    }

    /// Checks a password against a PHC string on a hashing thread.
    ///
    /// # Errors
    /// [`Error::Overloaded`] when the expected wait is over the budget.
    pub async fn verify(&self, password: String, phc: String) -> Result<bool> {
        self.run(move |mem| verify_with_memory(password.as_bytes(), &phc, mem))
            .await
    }

    /// Hashes a new password on a hashing thread.
    ///
    /// # Errors
    /// [`Error::Overloaded`] when the expected wait is over the budget.
    pub async fn hash(&self, params: HashParams, password: String) -> Result<String> {
        self.run(move |mem| hash_with_memory(params, password.as_bytes(), mem))
            .await?
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T> {
        let inner = &self.inner;
        let depth = inner.depth.fetch_add(1, Ordering::AcqRel) + 1;
        let expected = self.wait_for_depth(depth);
        if expected > inner.budget || depth > MAX_QUEUE || inner.stopping.load(Ordering::Relaxed) {
            inner.depth.fetch_sub(1, Ordering::AcqRel);
            let retry = expected
                .saturating_sub(inner.budget)
                .max(Duration::from_secs(1));
            return Err(Error::Overloaded(retry));
        }
        let (tx, rx) = oneshot::channel();
        let admitted = Instant::now();
        let job: Job = Box::new(move |mem| {
            let _ = tx.send((admitted.elapsed(), f(mem)));
        });
        match inner.queue.lock() {
            Ok(mut q) => q.push_back(job),
            Err(_) => {
                inner.depth.fetch_sub(1, Ordering::AcqRel);
                return Err(Error::Internal("hashing queue poisoned".into()));
            }
        }
        inner.ready.notify_one();
        match rx.await {
            Ok((wait, value)) => {
                inner.wait.observe(wait);
                Ok(value)
            }
            Err(_) => Err(Error::Internal("hashing thread ended".into())),
        }
    }

    /// Stops the threads once the queue is empty.
    pub fn stop(&self) {
        self.inner.stopping.store(true, Ordering::Relaxed);
        self.inner.ready.notify_all();
    }
}

fn worker(inner: &Inner) {
    lower_priority();
    let mut memory: Vec<Block> = Vec::new();
    loop {
        let job = {
            let Ok(mut q) = inner.queue.lock() else {
                return;
            };
            loop {
                if let Some(job) = q.pop_front() {
                    break job;
                }
                if inner.stopping.load(Ordering::Relaxed) {
                    return;
                }
                q = match inner.ready.wait(q) {
                    Ok(q) => q,
                    Err(_) => return,
                };
            }
        };
        let started = Instant::now();
        job(&mut memory);
        let took = started.elapsed();
        inner.hash_time.observe(took);
        let prev = inner.avg_ns.load(Ordering::Relaxed) as f64;
        let next = prev * (1.0 - EWMA_WEIGHT) + took.as_nanos() as f64 * EWMA_WEIGHT;
        inner.avg_ns.store((next as u64).max(1), Ordering::Relaxed);
        inner.depth.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs the hashing thread at a lower priority than the reactor threads, so
/// health checks and sockets stay responsive during a login storm. On Linux
/// the nice value is per thread.
#[allow(unsafe_code)]
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take no pointers and only affect
        // the calling thread's scheduling priority.
        let rc = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, HASH_THREAD_NICE)
        };
        if rc != 0 {
            tracing::debug!("could not lower the hashing thread's priority");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIGHT: HashParams = HashParams {
        m_cost: 64,
        t_cost: 1,
        p_cost: 1,
    };

    #[test]
    fn hash_and_verify_round_trip() {
        let phc = hash_password(LIGHT, b"correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert!(verify_password(b"correct horse", &phc));
        assert!(!verify_password(b"correct horsf", &phc));
        assert!(!verify_password(b"x", "not a phc string"));
        // salts differ
        assert_ne!(phc, hash_password(LIGHT, b"correct horse").unwrap());
    }

    #[test]
    fn owasp_parameters_are_stored() {
        let phc = hash_password(HashParams::OWASP, b"pw").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password(b"pw", &phc));
    }

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[tokio::test]
    async fn queue_admits_within_budget_and_refuses_beyond() {
        // Calibrated at 1 s per hash with one thread and a 2 s budget: two
        // checks fit, the third is refused with a retry hint.
        let h = Hasher::start(1, Duration::from_secs(2), Duration::from_secs(1));
        // Block the single thread so nothing drains while we fill the queue.
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let g = gate.clone();
        let first = {
            let h = h.clone();
            tokio::spawn(async move {
                h.run(move |_| {
                    let (m, c) = &*g;
                    let mut open = m.lock().unwrap();
                    while !*open {
                        open = c.wait(open).unwrap();
                    }
                })
                .await
            })
        };
        while h.depth() < 1 {
            tokio::task::yield_now().await;
        }
        let second = {
            let h = h.clone();
            tokio::spawn(async move { h.run(|_| 2).await })
        };
        while h.depth() < 2 {
            tokio::task::yield_now().await;
        }
        match h.run(|_| 3).await {
            Err(Error::Overloaded(retry)) => assert!(retry >= Duration::from_secs(1)),
            other => panic!("expected Overloaded, got {:?}", other.map(|_| ())),
        }
        {
            let (m, c) = &*gate;
            *m.lock().unwrap() = true;
            c.notify_all();
        }
        assert!(first.await.unwrap().is_ok());
        assert_eq!(second.await.unwrap().unwrap(), 2);
        // the thread lowers the depth right after answering
        tokio::time::timeout(Duration::from_secs(10), async {
            while h.depth() != 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("queue drains");
        h.stop();
    }
}
