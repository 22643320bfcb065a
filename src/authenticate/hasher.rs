//! Password checks off the async executor, isolated from request handling (SPEC §6).
//!
//! A semaphore admits `max_concurrent_hashes` checks; a login that cannot get a permit within
//! [`HASH_QUEUE_WAIT`], or whose check does not finish within it, is refused with 503 instead
//! of queueing forever.
//!
//! Each admitted check runs on one of the dedicated threads at `SCHED_IDLE` priority (one per
//! CPU, at most one per admitted check: [`idle_threads`]):
//! whenever a request is runnable the kernel runs it first and preempts hashing at once, so a
//! login storm does not slow proxied requests down. On its own that starves logins while the
//! core is saturated (by traffic or by other processes): measured with benches/load.sh's
//! storm of 50 logins/s, no login finished until the load stopped. So a check still
//! unanswered after [`RESCUE_AFTER`] is also queued to one *rescue* thread at nice 10, which
//! runs it again, then rests [`RESCUE_PAUSE`]; the first answer wins, and a check whose answer
//! is already known (or whose caller gave up) is skipped. Logins therefore keep finishing on a
//! saturated core, slowly, at a bounded cost to proxied requests.
//!
//! Measured (benches/load.sh storm on one saturated core; and logins with two CPU hogs on
//! the gateway's core): `SCHED_IDLE` alone kept proxied p99 at 1.9x idle, but with the hogs no
//! login ever finished; all threads at nice 15 finished 4-6 logins/s in the storm with p99 at
//! 2.8x; this design has p99 2.3-2.65x in the storm, and logins take 1.6 s with the hogs.
//!
//! What a hashing thread costs proxied requests is not its share of the core but how long it
//! holds the core each time: on a busy core the kernel switches tasks at its timer tick, so a
//! low-priority thread that gets the core keeps it until the next tick (4 ms at `HZ=250`),
//! while every request in flight waits. Even the request thread's own wakeup may not end
//! that: the kernel (EEVDF) does preempt the hasher, but a request thread that has had most of
//! the core comes back owing time, not yet eligible, and another hasher is picked instead
//! (seen with `perf sched`; README, "Why a woken request thread still waits"). The
//! [`Preempter`] thread therefore wakes every
//! [`PREEMPT_EVERY`] while a check is running: each wakeup is a point where the kernel
//! reschedules and hands the core back to request handling, so hashing holds it for at most
//! about that long at a time. Storm p99 went from 3.6-3.9x idle to 1.6x (two same-run A/B
//! runs), at ~10% of the core's throughput while checks are pending.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::Thread;
use std::time::Duration;

use argon2::password_hash::{Output, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{oneshot, Semaphore};

/// How long a login waits for an argon2 permit, and then for its answer, before 503.
pub const HASH_QUEUE_WAIT: Duration = Duration::from_secs(10);

/// How long a check may sit starved on the idle-priority threads before the rescue thread
/// runs it too.
pub const RESCUE_AFTER: Duration = Duration::from_secs(1);

/// The rescue thread's rest after each check it runs. Every slice the kernel gives it delays
/// the requests in flight by up to a scheduler tick, so its rate is bounded.
pub const RESCUE_PAUSE: Duration = Duration::from_secs(1);

/// How often the [`Preempter`] wakes while a check is running: the longest a hashing thread
/// holds a busy core at a time, instead of a scheduler tick.
pub const PREEMPT_EVERY: Duration = Duration::from_micros(500);

/// A thread that only sleeps, in [`PREEMPT_EVERY`] steps, while any check is running, and
/// parks otherwise. Waking is all it does: a normal-priority task that wakes preempts a
/// `SCHED_IDLE` one at once, and the kernel then picks the next task by fairness, which on a
/// core busy with requests is request handling once it is eligible again. It shares the
/// process's CPUs, so it helps where hashing shares a core with request handling (one CPU, as
/// in the load benchmark).
struct Preempter {
    running: AtomicUsize,
    /// Sleeps begun while a check was running (for tests).
    ticks: AtomicU64,
    /// Set once the thread runs; until then a check starting does not unpark it (it looks at
    /// least once a second anyway).
    thread: std::sync::OnceLock<Thread>,
}

/// Marks a check as running for as long as it lives.
struct Running<'a>(&'a Preempter);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Release);
    }
}

impl Preempter {
    fn start() -> Arc<Preempter> {
        // Built before its thread starts: a thread started inside `Arc::new_cyclic` could find
        // its weak reference not yet upgradable and end at once, leaving hashing unpreempted.
        let preempter = Arc::new(Preempter {
            running: AtomicUsize::new(0),
            ticks: AtomicU64::new(0),
            thread: std::sync::OnceLock::new(),
        });
        let weak = Arc::downgrade(&preempter);
        match std::thread::Builder::new()
            .name("gh-preempt".into())
            .spawn(move || Preempter::run(&weak))
        {
            Ok(handle) => {
                let _ = preempter.thread.set(handle.thread().clone());
            }
            Err(e) => tracing::warn!(error = %e, "cannot start the hashing preempter thread"),
        }
        preempter
    }

    fn run(this: &Weak<Preempter>) {
        loop {
            // Holds no strong reference while asleep: the thread ends with its Hasher.
            let Some(preempter) = this.upgrade() else {
                return;
            };
            let busy = preempter.running.load(Ordering::Acquire) > 0;
            if busy {
                preempter.ticks.fetch_add(1, Ordering::Relaxed);
            }
            drop(preempter);
            if busy {
                // A dedicated thread, never an executor's.
                #[allow(clippy::disallowed_methods)]
                std::thread::sleep(PREEMPT_EVERY);
            } else {
                std::thread::park_timeout(Duration::from_secs(1));
            }
        }
    }

    fn running(&self) -> Running<'_> {
        if self.running.fetch_add(1, Ordering::AcqRel) == 0 {
            if let Some(thread) = self.thread.get() {
                thread.unpark();
            }
        }
        Running(self)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("too many password checks are waiting")]
pub struct HashOverloaded;

/// One password check, shared by the thread(s) that may run it.
struct Check {
    hash: Arc<str>,
    password: String,
    verdict: Mutex<Option<oneshot::Sender<bool>>>,
}

impl Check {
    /// True when nobody needs this check any more: answered already, or the caller left.
    fn settled(&self) -> bool {
        self.verdict
            .lock()
            .map_or(true, |tx| tx.as_ref().is_none_or(|tx| tx.is_closed()))
    }

    /// Runs the check unless it is settled, in the thread's own argon2 `memory`; true when
    /// it ran.
    fn run(&self, preempter: &Preempter, memory: &mut Vec<Block>) -> bool {
        if self.settled() {
            return false;
        }
        let _running = preempter.running();
        let verdict = verify_in(&self.hash, self.password.as_bytes(), memory);
        if let Some(tx) = self.verdict.lock().ok().and_then(|mut tx| tx.take()) {
            let _ = tx.send(verdict);
        }
        true
    }
}

/// What `argon2`'s `PasswordVerifier::verify_password` does for a PHC string (same algorithm,
/// version, parameters and salt; the outputs compared in constant time by `Output`), except
/// that the argon2 memory is the calling thread's `memory`, grown when a hash needs more and
/// kept for the next check. `verify_password` allocates its memory (19 MiB with the default
/// parameters) for every check and frees it after: at 50 logins/s that is ~1 GB/s through the
/// allocator, pages faulted in and given back again and again. Measured with huge pages off
/// (src/main.rs), a login storm's proxied p99 was 1.69-1.73 ms with this and 1.78-1.82 ms
/// without: small, but no cost. A malformed hash, or memory that cannot be had, is a mismatch
/// (an allocation failure in `verify_password` aborts the process).
fn verify_in(hash: &str, password: &[u8], memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        if memory.try_reserve_exact(blocks - memory.len()).is_err() {
            tracing::warn!(blocks, "no memory for a password check");
            return false;
        }
        memory.resize(blocks, Block::default());
    }
    let argon2 = Argon2::new(algorithm, version, params);
    let mut out = [0u8; Output::MAX_LENGTH];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    if argon2
        .hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
        .is_err()
    {
        return false;
    }
    Output::new(out).is_ok_and(|computed| computed == expected)
}

type Queue = std::sync::mpsc::Sender<Arc<Check>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Priority {
    /// `SCHED_IDLE`: runs only when no request handling wants the core.
    Idle,
    /// `SCHED_OTHER` at nice 10: a small but real share of a busy core.
    Rescue,
}

/// The password-checking pools; see the module docs.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    idle: Queue,
    rescue: Queue,
    rescue_after: Duration,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher").finish_non_exhaustive()
    }
}

fn lower_priority(priority: Priority) {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{
            set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
            ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
        };
        let set = match priority {
            Priority::Idle => set_thread_priority_and_policy(
                thread_native_id(),
                ThreadPriority::Min,
                ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
            )
            .map_err(|e| format!("{e:?}")),
            // thread-priority maps its 0..=99 scale linearly onto nice 19..=-20: 22 is nice 10
            // (`threads_run_at_their_priorities` checks it in /proc).
            Priority::Rescue => ThreadPriorityValue::try_from(22u8)
                .map_err(|e| format!("{e:?}"))
                .and_then(|p| {
                    set_thread_priority_and_policy(
                        thread_native_id(),
                        ThreadPriority::Crossplatform(p),
                        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other),
                    )
                    .map_err(|e| format!("{e:?}"))
                }),
        };
        if let Err(error) = set {
            tracing::debug!(%error, ?priority, "could not lower a hashing thread's priority");
        }
    }
}

/// Starts `n` threads taking checks from one queue. The rescue thread rests [`RESCUE_PAUSE`]
/// after each check it runs.
fn pool(name: &str, n: usize, priority: Priority, preempter: &Arc<Preempter>) -> Queue {
    let (queue, rx) = std::sync::mpsc::channel::<Arc<Check>>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..n {
        let rx = rx.clone();
        let preempter = preempter.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("{name}-{i}"))
            .spawn(move || {
                lower_priority(priority);
                // This thread's argon2 memory, reused by every check it runs.
                let mut memory = Vec::new();
                loop {
                    let check = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match check {
                        Ok(check) => {
                            if check.run(&preempter, &mut memory) && priority == Priority::Rescue {
                                // A dedicated thread, never an executor's.
                                #[allow(clippy::disallowed_methods)]
                                std::thread::sleep(RESCUE_PAUSE);
                            }
                        }
                        // The Hasher is gone: so is this thread.
                        Err(_) => return,
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a password-hashing thread");
        }
    }
    queue
}

/// How many idle-priority hashing threads to start: one per CPU this process may use, at most
/// one per admitted check. More threads than CPUs hash no faster; each runnable one only adds
/// its fair share of a busy core, taken in slices that stall request handling, and 19 MiB of
/// argon2 memory. Measured on one CPU under the load benchmark's storm, 4 threads against 1:
/// storm p99 over idle 2.6x against 1.9x (six rounds each, alternated), 1.44x against 1.52x
/// in another run (noise); logins refused with 503 per 10 s storm 26-31 against none.
fn idle_threads(max_concurrent: usize, cpus: usize) -> usize {
    max_concurrent.min(cpus).max(1)
}

impl Hasher {
    /// Admits `max_concurrent` checks at once; they run on [`idle_threads`] threads, and an
    /// admitted check waits for one.
    pub fn new(max_concurrent: usize) -> Hasher {
        let n = max_concurrent.max(1);
        let cpus = std::thread::available_parallelism().map_or(1, |p| p.get());
        let preempter = Preempter::start();
        Hasher {
            permits: Arc::new(Semaphore::new(n)),
            idle: pool("gh-hash", idle_threads(n, cpus), Priority::Idle, &preempter),
            rescue: pool("gh-rescue", 1, Priority::Rescue, &preempter),
            rescue_after: RESCUE_AFTER,
        }
    }

    /// Verifies `password` against `hash` off the async executor. A malformed hash is
    /// simply a mismatch.
    pub async fn verify(&self, hash: Arc<str>, password: String) -> Result<bool, HashOverloaded> {
        let start = tokio::time::Instant::now();
        let _permit = tokio::time::timeout(HASH_QUEUE_WAIT, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| HashOverloaded)?
            .map_err(|_| HashOverloaded)?;
        let (tx, mut rx) = oneshot::channel();
        let check = Arc::new(Check {
            hash,
            password,
            verdict: Mutex::new(Some(tx)),
        });
        self.idle.send(check.clone()).map_err(|_| HashOverloaded)?;
        if let Ok(verdict) = tokio::time::timeout(self.rescue_after, &mut rx).await {
            return verdict.map_err(|_| HashOverloaded);
        }
        self.rescue.send(check).map_err(|_| HashOverloaded)?;
        // Dropping `rx` on timeout tells both threads to skip the check if not yet begun.
        tokio::time::timeout_at(start + HASH_QUEUE_WAIT, rx)
            .await
            .map_err(|_| HashOverloaded)?
            .map_err(|_| HashOverloaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authenticate::users::hash_password;

    /// `verify_in` agrees with argon2's own `verify_password` on every variant, version and
    /// parameter set, on right and wrong passwords and on malformed hashes, reusing one
    /// memory across checks of different sizes.
    #[test]
    fn verify_in_agrees_with_argon2_s_verifier() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
        let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
        let mut hashes = Vec::new();
        for algorithm in [Algorithm::Argon2id, Algorithm::Argon2i, Algorithm::Argon2d] {
            for version in [Version::V0x13, Version::V0x10] {
                for (m, t, p, len) in [(64, 1, 1, 32), (256, 3, 2, 16), (1024, 2, 4, 64)] {
                    let params = Params::new(m, t, p, Some(len)).unwrap();
                    let hash = Argon2::new(algorithm, version, params)
                        .hash_password(b"right", &salt)
                        .unwrap()
                        .to_string();
                    hashes.push(hash);
                }
            }
        }
        // A version-0x10 hash without its `v=`: both take the default version (0x13), so
        // neither accepts it. And one with the default parameters.
        hashes.push(hashes[3].replace("$v=16", ""));
        hashes.push(hash_password(b"right").unwrap());
        let malformed = [
            String::new(),
            "$argon2id$v=19$m=64,t=1,p=1$c2l4dGVlbg".into(),
            hashes[0].replace("$argon2id$", "$balloon$"),
            hashes[0].replace("v=19", "v=20"),
            hashes[0].replace("m=64", "m=1"),
            format!("{}A", hashes[0]),
        ];
        let mut memory = Vec::new();
        let mut accepted = 0;
        for hash in hashes.iter().chain(&malformed) {
            for password in [&b"right"[..], b"wrong", b""] {
                let oracle = PasswordHash::new(hash).is_ok_and(|parsed| {
                    Argon2::default().verify_password(password, &parsed).is_ok()
                });
                assert_eq!(verify_in(hash, password, &mut memory), oracle, "{hash}");
                accepted += usize::from(oracle);
            }
        }
        assert_eq!(
            accepted,
            hashes.len() - 1,
            "each good hash, its right password only"
        );
        assert!(verify_in(&hashes[0], b"right", &mut memory));
        assert_eq!(
            memory.len(),
            Params::DEFAULT_M_COST as usize,
            "kept at its largest"
        );
    }

    #[tokio::test]
    async fn verify_accepts_the_right_password_only() {
        let hash: Arc<str> = hash_password(b"correct horse").unwrap().into();
        let hasher = Hasher::new(1);
        assert!(hasher
            .verify(hash.clone(), "correct horse".into())
            .await
            .unwrap());
        assert!(!hasher.verify(hash, "wrong".into()).await.unwrap());
    }

    #[tokio::test]
    async fn a_starved_check_is_answered_by_the_rescue_thread() {
        // The idle-priority queue is never served (as when a busy core starves those
        // threads): the check can only be answered by the rescue thread.
        let hash: Arc<str> = hash_password(b"pw").unwrap().into();
        let (idle, _never_served) = std::sync::mpsc::channel();
        let hasher = Hasher {
            permits: Arc::new(Semaphore::new(2)),
            idle,
            rescue: pool("gh-rescue", 1, Priority::Rescue, &Preempter::start()),
            rescue_after: Duration::from_millis(50),
        };
        assert!(hasher.verify(hash.clone(), "pw".into()).await.unwrap());
        assert!(!hasher.verify(hash, "nope".into()).await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_nobody_runs_is_refused_instead_of_hanging() {
        let hash: Arc<str> = hash_password(b"pw").unwrap().into();
        let (idle, _never_served) = std::sync::mpsc::channel();
        let (rescue, _never_served_either) = std::sync::mpsc::channel();
        let hasher = Hasher {
            permits: Arc::new(Semaphore::new(1)),
            idle,
            rescue,
            rescue_after: RESCUE_AFTER,
        };
        let start = tokio::time::Instant::now();
        let answer = hasher.verify(hash, "pw".into()).await;
        assert!(matches!(answer, Err(HashOverloaded)));
        assert_eq!(start.elapsed(), HASH_QUEUE_WAIT);
    }

    #[test]
    fn a_settled_check_is_skipped() {
        let hash: Arc<str> = hash_password(b"pw").unwrap().into();
        let (tx, rx) = oneshot::channel();
        let check = Check {
            hash,
            password: "pw".into(),
            verdict: Mutex::new(Some(tx)),
        };
        assert!(!check.settled());
        drop(rx);
        assert!(check.settled(), "the caller left");
        let preempter = Preempter::start();
        assert!(!check.run(&preempter, &mut Vec::new()));
        assert!(check.verdict.lock().unwrap().is_some(), "not run");
        assert_eq!(preempter.running.load(Ordering::Acquire), 0);
    }

    #[test]
    fn the_preempter_wakes_only_while_a_check_runs() {
        let hash: Arc<str> = hash_password(b"pw").unwrap().into();
        let preempter = Preempter::start();
        let (tx, rx) = oneshot::channel();
        let check = Check {
            hash,
            password: "pw".into(),
            verdict: Mutex::new(Some(tx)),
        };
        let before = preempter.ticks.load(Ordering::Relaxed);
        assert!(check.run(&preempter, &mut Vec::new()));
        assert!(rx.blocking_recv().unwrap());
        // It wakes while a check runs. A loaded machine (CI runs tests in parallel) may not
        // schedule it within one hash, so hold a check running until it has, within 5 s.
        {
            let _running = preempter.running();
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while preempter.ticks.load(Ordering::Relaxed) == before {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no wakeup while a check runs"
                );
                #[allow(clippy::disallowed_methods)]
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        assert_eq!(preempter.running.load(Ordering::Acquire), 0);
        // Idle now: at most the wakeup already under way, then none for as long as we look.
        let quiet = |window: Duration| {
            let ticks = preempter.ticks.load(Ordering::Relaxed);
            // A test thread, not an executor's; no wakeups can only be seen over a window.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(window);
            preempter.ticks.load(Ordering::Relaxed) == ticks
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !quiet(Duration::from_millis(20)) {
            assert!(
                std::time::Instant::now() < deadline,
                "still waking while idle"
            );
        }
        assert!(quiet(Duration::from_millis(200)), "woke while idle");
    }

    /// (scheduling policy, nice) of every live thread of this process whose name starts
    /// with `prefix`, from /proc.
    #[cfg(target_os = "linux")]
    fn thread_priorities(prefix: &str) -> Vec<(u32, i32)> {
        let mut found = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let dir = task.unwrap().path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if !comm.starts_with(prefix) {
                continue;
            }
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
            // Fields after "(comm)" start at field 3 (state): nice is 19, policy 41.
            let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
                .split_whitespace()
                .collect();
            found.push((
                fields[41 - 3].parse().unwrap(),
                fields[19 - 3].parse().unwrap(),
            ));
        }
        found
    }

    #[test]
    fn one_idle_thread_per_cpu_at_most_one_per_admitted_check() {
        assert_eq!(idle_threads(4, 1), 1);
        assert_eq!(idle_threads(4, 2), 2);
        assert_eq!(idle_threads(4, 64), 4);
        assert_eq!(idle_threads(1, 8), 1);
        assert_eq!(idle_threads(0, 0), 1);
    }

    #[tokio::test]
    async fn admitted_checks_beyond_the_threads_wait_for_one() {
        // One thread, three admitted checks at once: all are answered, rightly.
        let hash: Arc<str> = hash_password(b"pw").unwrap().into();
        let preempter = Preempter::start();
        let hasher = Hasher {
            permits: Arc::new(Semaphore::new(3)),
            idle: pool("gh-hash-one", 1, Priority::Idle, &preempter),
            rescue: pool("gh-rescue-one", 1, Priority::Rescue, &preempter),
            rescue_after: RESCUE_AFTER,
        };
        let (a, b, c) = tokio::join!(
            hasher.verify(hash.clone(), "pw".into()),
            hasher.verify(hash.clone(), "nope".into()),
            hasher.verify(hash, "pw".into()),
        );
        assert_eq!((a.unwrap(), b.unwrap(), c.unwrap()), (true, false, true));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn threads_run_at_their_priorities() {
        const SCHED_OTHER: u32 = 0;
        const SCHED_IDLE: u32 = 5;
        let hash: Arc<str> = hash_password(b"pw").unwrap().into();
        let hasher = Hasher::new(2);
        // Threads lower their priority as they start; a hash takes long enough for all of
        // them to have started.
        assert!(hasher.verify(hash, "pw".into()).await.unwrap());
        let idle = thread_priorities("gh-hash-");
        assert!(!idle.is_empty(), "idle threads: {idle:?}");
        assert!(
            idle.iter().all(|&(policy, _)| policy == SCHED_IDLE),
            "{idle:?}"
        );
        let rescue = thread_priorities("gh-rescue-");
        assert!(!rescue.is_empty());
        assert!(rescue.iter().all(|&p| p == (SCHED_OTHER, 10)), "{rescue:?}");
    }
}
