//! What a pass leaves in `archive/`: the backlog (every listed file not
//! removed, whatever the reason) and, when the transfer window closed, the
//! files it did not get to (deferred). Both go into the intersection's
//! report, set afresh by each connected attempt (a reconnect lists again).
//! Also the coprocessor's free space (`statvfs@openssh.com`).

use super::{Engine, Op};
use crate::common::clock::unix_now;
use crate::report::{Backlog, Deferred, RemoteSpace};
use crate::ssh::sftp::{Response, Statvfs};

impl Engine<'_, '_> {
    /// Records the backlog and, once the window closed, the deferred
    /// files: those it left unstarted or stopped, and any still in flight
    /// when the session was shut (they resume next pass).
    pub(super) fn account_left(&mut self) {
        let jobs = &self.tree.jobs;
        let mut backlog = Backlog::default();
        let mut oldest: Option<u32> = None;
        for (j, job) in jobs.iter().enumerate() {
            if self.removed.contains(&j) {
                continue;
            }
            backlog.files += 1;
            backlog.bytes += job.size;
            oldest = Some(oldest.map_or(job.mtime, |o| o.min(job.mtime)));
        }
        backlog.oldest_mtime = oldest.map(u64::from);
        // A listing cut short tells only a lower bound.
        backlog.complete = self.listing_complete;
        self.report.backlog = Some(backlog);
        let window_closed = self
            .ctx
            .window
            .is_some_and(|w| w.closed(std::time::Instant::now()));
        if !window_closed {
            self.report.deferred = None;
            return;
        }
        let mut deferred = Deferred::default();
        let in_flight = self.files.keys().copied();
        let committing = self.resumed.keys().copied();
        for j in self
            .deferred
            .iter()
            .copied()
            .chain(in_flight)
            .chain(committing)
        {
            deferred.files += 1;
            deferred.bytes += jobs[j].size;
        }
        self.report.deferred = Some(deferred);
    }

    /// Asks the coprocessor for the free space of `v2x_data_location`'s
    /// filesystem without waiting: the answer comes in with the other
    /// answers ([`Engine::space_answered`]); `after` marks the question
    /// asked once the deletes were sent. A server that does not offer
    /// `statvfs@openssh.com` is said so once, in the report.
    pub(super) fn ask_remote_space(&mut self, after: bool) {
        let path = self.ctx.ix.v2x_data_location.clone();
        match self.wire.send_statvfs(path.as_bytes()) {
            Some(id) => {
                self.ops.insert(id, Op::Statvfs(after));
            }
            None => self.report.remote_space = Some(RemoteSpace::unsupported()),
        }
    }

    /// Records a `statvfs@openssh.com` answer; one from before the deletes
    /// never replaces one from after them (a server may answer out of
    /// order).
    pub(super) fn space_answered(&mut self, answer: Response, after: bool) {
        if self.space_answered_after && !after {
            return;
        }
        self.space_answered_after |= after;
        let path = &self.ctx.ix.v2x_data_location;
        let space = match answer {
            Response::Extended(body) => match Statvfs::parse(&body) {
                Some(s) => RemoteSpace::measured(s.avail_bytes(), s.size_bytes(), unix_now()),
                None => RemoteSpace::failed("the statvfs@openssh.com answer is too short"),
            },
            r => RemoteSpace::failed(&format!(
                "statvfs@openssh.com of {path} answered {}",
                r.describe()
            )),
        };
        self.report.remote_space = Some(space);
    }
}
