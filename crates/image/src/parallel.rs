//! Runs jobs on a few threads, stopping new ones after the first failure: layers of a pull or a push.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Calls `f(i)` for every i in 0..n on up to `workers` threads and collects the results in order; after the
/// first error no new job starts (running ones finish) and that error is returned.
pub fn run<T: Send, E: Send>(
    n: usize,
    workers: usize,
    f: impl Fn(usize) -> Result<T, E> + Sync,
) -> Result<Vec<T>, E> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<E>> = Mutex::new(None);
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..workers.clamp(1, n.max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n || failed.load(Ordering::SeqCst) {
                    return;
                }
                match f(i) {
                    Ok(v) => {
                        let mut r = results.lock().unwrap_or_else(|p| p.into_inner());
                        r[i] = Some(v);
                    }
                    Err(e) => {
                        failed.store(true, Ordering::SeqCst);
                        first_error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    // Without an error every job ran and stored its result.
    Ok(results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .flatten()
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_in_order_and_first_error_stops() {
        assert_eq!(
            super::run(5, 3, |i| Ok::<_, ()>(i * 2)).unwrap(),
            vec![0, 2, 4, 6, 8]
        );
        assert_eq!(super::run(0, 3, Ok::<_, ()>).unwrap(), Vec::<usize>::new());
        let r = super::run(100, 2, |i| if i == 3 { Err(i) } else { Ok(i) });
        assert_eq!(r, Err(3));
    }
}
