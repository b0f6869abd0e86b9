//! The tools' way to work on several intersections at once (`check-config
//! --connect`, `trust`, `run --dry-run`); a pass has its own workers
//! (`transfer::pass`).

use std::thread;

/// Runs `work` on each item, at most `parallel` at a time on scoped
/// threads, each inside the `intersection` span of the name `name` gives,
/// so every record it logs carries `INTERSECTION=` (see [`crate::logging`]).
/// Results come in the order of `items`. An item whose thread panics gets
/// `on_panic(item)`: one intersection's bug must not take the others'
/// results with it.
pub fn each_intersection<I: Sync, T: Send>(
    items: &[I],
    parallel: usize,
    name: impl Fn(&I) -> &str + Sync,
    work: impl Fn(&I) -> T + Sync,
    on_panic: impl Fn(&I) -> T,
) -> Vec<T> {
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(parallel.max(1)) {
        thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|item| {
                    let (name, work) = (&name, &work);
                    scope.spawn(move || {
                        let _span = tracing::info_span!("intersection", intersection = %name(item))
                            .entered();
                        work(item)
                    })
                })
                .collect();
            for (handle, item) in handles.into_iter().zip(chunk) {
                out.push(handle.join().unwrap_or_else(|_| on_panic(item)));
            }
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_order_given_and_a_panic_costs_only_its_item() {
        let items: Vec<u32> = (0..7).collect();
        let got = each_intersection(
            &items,
            3,
            |_| "x",
            |&i| {
                assert_ne!(i, 4, "a bug for item 4");
                i * 10
            },
            |&i| 1000 + i,
        );
        assert_eq!(got, vec![0, 10, 20, 30, 1004, 50, 60]);
    }
}
