//! The threads that decode, resize and encode images: as many as images may
//! be in flight, started once and run at a lower CPU priority
//! (`workers.build_niceness`, nice 10 by default), so that on a busy machine
//! request handling, event consumption, the relay and the databases get the
//! CPU first and image builds take what is left.
use std::sync::{mpsc, Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub struct BuildThreads {
    jobs: mpsc::Sender<Job>,
}

impl BuildThreads {
    /// Starts `count` threads at the given `nice` value.
    pub fn new(count: usize, niceness: i32) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..count.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("image-build-{n}"))
                .spawn(move || {
                    lower_priority(niceness);
                    loop {
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .expect("start an image build thread");
        }
        Self { jobs }
    }

    /// Runs `work` on a build thread. `Err` carries the panic message when
    /// it panicked (a decoder bug must not take the service down).
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
                .map_err(|panic| panic_message(panic.as_ref()));
            let _ = done.send(outcome);
        });
        self.jobs
            .send(job)
            .map_err(|_| "the build threads stopped".to_owned())?;
        result
            .await
            .map_err(|_| "the build thread stopped".to_owned())?
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned())
}

/// Lowers the calling thread's CPU priority; failing that, it runs as is.
fn lower_priority(niceness: i32) {
    if niceness == 0 {
        return;
    }
    let thread = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(thread), niceness) {
        tracing::warn!(error = %e, "image build thread keeps the normal CPU priority");
    }
}

#[cfg(test)]
mod tests {
    use super::BuildThreads;

    fn own_niceness() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
    }

    #[tokio::test]
    async fn work_runs_on_a_lower_priority_thread_and_panics_come_back_as_errors() {
        let threads = BuildThreads::new(1, 10);
        assert_eq!(threads.run(own_niceness).await, Ok(10));
        let lowest = BuildThreads::new(1, 19);
        assert_eq!(lowest.run(own_niceness).await, Ok(19));
        let name = threads
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("image-build-0"));
        let panicked = threads.run(|| -> u8 { panic!("decoder bug") }).await;
        assert_eq!(panicked, Err("decoder bug".to_owned()));
        assert_eq!(
            threads.run(|| 7).await,
            Ok(7),
            "the thread survives a panic"
        );
    }
}
