//! Pulling files: admission (age and free space), OPEN, READs pipelined
//! within the in-flight budget and written in order, then the READ at the
//! listed end, FSTAT and CLOSE, whose answers may come in any order. What a
//! file's reads end with is judged in [`super::commit`].

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Active, CHUNK, Engine, FileState, HASH_BATCH, MAX_FILES, NO_BATCH, Op, Trouble};
use crate::common::clock::unix_now;
use crate::config::Verify;
use crate::error::Disposition;
use crate::landing::{LandingError, free_bytes};
use crate::ledger::Level;
use crate::ssh::exec::HashError;
use crate::ssh::sftp::{Response, status};
use crate::transfer::classify::classify;
use crate::transfer::rules::too_young;
use crate::transfer::stop::{Cause, Stop};

/// The longest sleep while waiting for the bandwidth caps.
const PACE_NAP: Duration = Duration::from_millis(50);
/// Time kept before the window's hard end to close, commit and delete
/// the files that finish.
const WRAP_UP: Duration = Duration::from_secs(3);

impl Engine<'_, '_> {
    /// Bytes of the files being read not yet asked for.
    fn unrequested(&self) -> u64 {
        self.files
            .iter()
            .filter(|(_, a)| a.trouble.is_none())
            .map(|(&j, a)| self.tree.jobs[j].size.saturating_sub(a.next_req))
            .sum()
    }

    /// After the window's end: a file whose rest would not arrive before
    /// the hard end (at the rate this attempt has read so far, after what
    /// is already in flight, with [`WRAP_UP`] left to commit and delete)
    /// stops asking for more and keeps what it has for the next pass, so
    /// the session is not cut mid-file and nothing is read twice.
    fn last_call(&mut self, hard_end: Instant, now: Instant) {
        let left = hard_end
            .saturating_duration_since(now)
            .saturating_sub(WRAP_UP);
        let elapsed = now
            .saturating_duration_since(self.reads_began)
            .as_secs_f64();
        let rate = self.read_this_attempt as f64 / elapsed.max(1.0);
        let mut budget = left.as_secs_f64() * rate - self.inflight as f64;
        for &j in &self.reading {
            let size = self.tree.jobs[j].size;
            let Some(a) = self.files.get_mut(&j) else {
                continue;
            };
            if a.trouble.is_some() || a.next_req >= size {
                continue;
            }
            let rest = (size - a.next_req) as f64;
            if rest <= budget {
                budget -= rest;
            } else {
                a.fail(Trouble::Window);
            }
        }
    }

    /// The window closed before file `j` was started: it stays on the
    /// coprocessor for the next pass and is reported as deferred, unless
    /// it had to wait anyway (too young).
    fn defer(&mut self, j: usize) -> Result<(), Stop> {
        let mtime = u64::from(self.tree.jobs[j].mtime);
        let min_age = self.ctx.config.transfer.min_age;
        if let Some(reason) = too_young(self.tree.job_depth(j), mtime, unix_now(), min_age) {
            let rel = self.tree.job_rel(j);
            self.skip(&rel, &reason);
        } else {
            self.deferred.push(j);
        }
        self.child_done(self.tree.job_dir(j), false)
    }

    /// Takes the files in `order`, at most [`MAX_FILES`] open at once.
    pub(super) fn transfer(&mut self, order: Vec<usize>) -> Result<(), Stop> {
        // Folders that were empty (or held only skipped entries) resolve now.
        for d in (1..self.tree.dirs.len()).rev() {
            if self.tree.dirs[d].pending == 0 {
                self.dir_done(d)?;
            }
        }
        self.count_listed(&order);
        let mut queue: VecDeque<usize> = order.into();
        loop {
            if self.cancelled() {
                return Err(Stop::cancelled());
            }
            if let Some(w) = self.ctx.window {
                let now = Instant::now();
                if now >= w.hard_end {
                    return Err(Cause::WindowClosed { end: w.end_unix }.into());
                }
                if w.closed(now) {
                    while let Some(job) = queue.pop_front() {
                        self.defer(job)?;
                    }
                    self.last_call(w.hard_end, now);
                }
            }
            // Under a bandwidth cap, files are opened only as their reads
            // come due: what the window stops then was not started. (Without
            // one, reads follow at once and the in-flight bound decides.)
            let paced = self.ctx.pacer.is_limited();
            // Asked for sha256: no file is opened before the account is
            // known to hash. Under auto the OPENs go out first, and the
            // exec channel's round trips pass while they are answered.
            let hash_first = self.ctx.config.transfer.verify == Verify::Sha256;
            let mut unbatched = Vec::new();
            while self.files.len() + self.commits.pending() < MAX_FILES
                && self.inflight < self.max_inflight
                && (!paced || self.unrequested() < self.max_inflight)
            {
                let Some(job) = queue.pop_front() else { break };
                if self.level == Level::Sha256 && !self.batch_of.contains_key(&job) {
                    if hash_first {
                        self.start_hashes(&[job], &queue)?;
                    } else {
                        unbatched.push(job);
                    }
                }
                self.admit(job)?;
            }
            unbatched.retain(|j| self.files.contains_key(j));
            if self.level == Level::Sha256 && !unbatched.is_empty() {
                self.start_hashes(&unbatched, &queue)?;
            }
            self.request_reads();
            while let Some((job, result)) = self.commits.try_done() {
                self.committed(job, result)?;
            }
            self.record_and_delete()?;
            if !self.space_asked_after
                && queue.is_empty()
                && self.files.is_empty()
                && self.commits.pending() == 0
                && self.to_record.is_empty()
            {
                // Every REMOVE is sent, and sftp-server answers in order:
                // asked now, the free space counts them, and its answer
                // comes with theirs rather than a round trip after them.
                self.space_asked_after = true;
                self.ask_remote_space(true);
            }
            if self.ops.is_empty() && self.wire.outstanding() == 0 {
                if let Some((job, result)) = self.commits.wait_done() {
                    self.committed(job, result)?;
                    self.record_and_delete()?;
                    continue;
                }
                if let Some(wait) = self.paced.take() {
                    // Short naps: a signal or the window's end is noticed soon.
                    std::thread::sleep(wait.min(PACE_NAP));
                    continue;
                }
                if queue.is_empty() {
                    return Ok(());
                }
                continue;
            }
            let (id, response) = self.wire.recv()?;
            if let Some(op) = self.ops.remove(&id) {
                self.answered(op, response)?;
            }
        }
    }

    /// Asks the coprocessor to hash the files being opened (`opening`, at
    /// most [`MAX_FILES`]) and those queued after them (up to
    /// [`HASH_BATCH`] in all, in the order they will be read, so a folder's
    /// files go together): it hashes while SFTP carries the data.
    fn start_hashes(&mut self, opening: &[usize], queue: &VecDeque<usize>) -> Result<(), Stop> {
        let now = unix_now();
        let min_age = self.ctx.config.transfer.min_age;
        let jobs: Vec<usize> = opening
            .iter()
            .copied()
            .chain(queue.iter().copied().filter(|&j| {
                !self.batch_of.contains_key(&j)
                    && too_young(
                        self.tree.job_depth(j),
                        u64::from(self.tree.jobs[j].mtime),
                        now,
                        min_age,
                    )
                    .is_none()
            }))
            .take(HASH_BATCH)
            .collect();
        let paths: Vec<Vec<u8>> = jobs
            .iter()
            .map(|&j| self.tree.job_path(j).into_os_string().into_vec())
            .collect();
        let refs: Vec<&[u8]> = paths.iter().map(Vec::as_slice).collect();
        let batch = match self.wire.hash_start(&refs) {
            Ok(b) => {
                self.batch_left.insert(b, jobs.len());
                if self.ctx.config.transfer.verify == Verify::Sha256 {
                    // Asked for: no file is opened before it is known
                    // that the account can hash.
                    match self.wire.hash_settle() {
                        Ok(()) => {}
                        Err(HashError::Session(e)) => return Err(e.into()),
                        Err(e) => return self.no_hasher(e.to_string()),
                    }
                }
                b
            }
            Err(HashError::Session(e)) => return Err(e.into()),
            Err(HashError::NoHasher(why)) => return self.no_hasher(why),
            Err(HashError::Unavailable(why)) => {
                tracing::warn!("cannot start sha256sum on the coprocessor: {why}");
                self.batch_error = why;
                NO_BATCH
            }
        };
        for j in jobs {
            self.batch_of.insert(j, batch);
        }
        Ok(())
    }

    /// Adds what this attempt will read to the progress totals.
    fn count_listed(&self, order: &[usize]) {
        let now = unix_now();
        let min_age = self.ctx.config.transfer.min_age;
        let jobs = &self.tree.jobs;
        let listed: u64 = order
            .iter()
            .filter(|&&j| {
                too_young(
                    self.tree.job_depth(j),
                    u64::from(jobs[j].mtime),
                    now,
                    min_age,
                )
                .is_none()
            })
            .map(|&j| jobs[j].size)
            .sum();
        self.ctx
            .progress
            .listed_bytes
            .fetch_add(listed, Ordering::Relaxed);
    }

    /// Starts file `j`: age and space checks, the partial, OPEN.
    fn admit(&mut self, j: usize) -> Result<(), Stop> {
        let min_age = self.ctx.config.transfer.min_age;
        let mtime = u64::from(self.tree.jobs[j].mtime);
        if let Some(reason) = too_young(self.tree.job_depth(j), mtime, unix_now(), min_age) {
            let rel = self.tree.job_rel(j);
            self.skip(&rel, &reason);
            return self.child_done(self.tree.job_dir(j), false);
        }
        self.check_free_space(self.tree.jobs[j].size)?;
        let job = &self.tree.jobs[j];
        let name = OsStr::from_bytes(&job.name);
        let target_dir = match classify(&name.to_string_lossy(), &self.ctx.config.elements) {
            Some(el) => self.ctx.data_root.join(el),
            None => self.ctx.data_root.to_path_buf(),
        };
        let path = self.tree.job_path(j);
        let partial = match self.lander.open(
            &target_dir,
            name,
            path.as_os_str().as_bytes(),
            job.identity(),
        ) {
            Ok(p) => p,
            Err(e) => return self.local_failure(j, e),
        };
        let resumed = partial.offset();
        self.files.insert(
            j,
            Active {
                next_req: resumed,
                resumed,
                partial,
                reads_out: 0,
                ahead: BTreeMap::new(),
                state: FileState::Opening,
                trouble: None,
            },
        );
        self.reading.push(j);
        let id = self.wire.send_open_read(path.as_os_str().as_bytes());
        self.ops.insert(id, Op::Open(j));
        Ok(())
    }

    /// The OPEN's answer: a handle to read with, or the file is left.
    pub(super) fn opened(&mut self, j: usize, response: Response) -> Result<(), Stop> {
        if let Response::Handle(handle) = response {
            if let Some(a) = self.files.get_mut(&j) {
                a.state = FileState::Reading { handle };
            }
            return Ok(());
        }
        // The prefix an earlier pass wrote stays for a later resume.
        self.files.remove(&j);
        self.reading.retain(|&r| r != j);
        let rel = self.tree.job_rel(j);
        if matches!(
            response,
            Response::Status {
                code: status::NO_SUCH_FILE,
                ..
            }
        ) {
            self.skip(&rel, "vanished before it could be read");
        } else {
            self.file_error(
                &rel,
                format!(
                    "cannot open: {}; left on the coprocessor",
                    response.describe()
                ),
            );
        }
        self.child_done(self.tree.job_dir(j), false)
    }

    /// Issues READs while the in-flight budget allows, files in the order
    /// they were admitted; a file whose reads are over moves on to closing.
    fn request_reads(&mut self) {
        let chunk = self.ctx.pacer.chunk(CHUNK);
        'files: for &j in &self.reading {
            if self.inflight >= self.max_inflight {
                break;
            }
            let Some(a) = self.files.get_mut(&j) else {
                continue;
            };
            let FileState::Reading { handle } = &a.state else {
                continue;
            };
            if a.trouble.is_some() {
                continue;
            }
            let size = self.tree.jobs[j].size;
            while a.next_req < size && self.inflight < self.max_inflight {
                let len = u32::try_from((size - a.next_req).min(u64::from(chunk))).unwrap_or(chunk);
                if let Err(wait) = self.ctx.pacer.try_take(u64::from(len)) {
                    self.paced = Some(wait);
                    break 'files;
                }
                let id = self.wire.send_read(handle, a.next_req, len);
                self.ops.insert(
                    id,
                    Op::Read {
                        job: j,
                        offset: a.next_req,
                        len,
                    },
                );
                a.next_req += u64::from(len);
                a.reads_out += 1;
                self.inflight += u64::from(len);
            }
        }
        let done: Vec<usize> = self
            .reading
            .iter()
            .copied()
            .filter(|j| {
                self.files.get(j).is_some_and(|a| {
                    matches!(a.state, FileState::Reading { .. })
                        && a.reads_out == 0
                        && (a.trouble.is_some() || a.partial.offset() == self.tree.jobs[*j].size)
                })
            })
            .collect();
        for j in done {
            self.finish_reading(j);
        }
    }

    /// All data is in (or the file went wrong): one READ at the listed size,
    /// which must answer EOF (a server whose listing and FSTAT both
    /// understate the size is caught here, not by a REMOVE that loses the
    /// rest), FSTAT and CLOSE, all at once.
    fn finish_reading(&mut self, j: usize) {
        self.reading.retain(|&r| r != j);
        let Some(a) = self.files.get_mut(&j) else {
            return;
        };
        let FileState::Reading { handle } = std::mem::replace(&mut a.state, FileState::Opening)
        else {
            return;
        };
        let mut awaiting = 1;
        if a.trouble.is_none() {
            let id = self.wire.send_read(&handle, self.tree.jobs[j].size, 1);
            self.ops.insert(id, Op::ReadEnd(j));
            let id = self.wire.send_fstat(&handle);
            self.ops.insert(id, Op::Fstat(j));
            awaiting += 2;
        }
        let id = self.wire.send_close(&handle);
        self.ops.insert(id, Op::Close(j));
        a.state = FileState::Closing {
            awaiting,
            ended: false,
            fstat: None,
        };
    }

    /// One READ's answer: data goes to the partial in order; a short answer
    /// asks for the rest; anything else ends this file's reads.
    pub(super) fn read_answered(
        &mut self,
        j: usize,
        offset: u64,
        len: u32,
        response: Response,
    ) -> Result<(), Stop> {
        self.inflight = self.inflight.saturating_sub(u64::from(len));
        let Some(a) = self.files.get_mut(&j) else {
            return Ok(());
        };
        a.reads_out = a.reads_out.saturating_sub(1);
        match response {
            Response::Data(data) if !data.is_empty() && data.len() <= len as usize => {
                // A file stopped by the window still writes what it asked
                // for: the next pass resumes after it.
                if a.trouble
                    .as_ref()
                    .is_some_and(|t| !matches!(t, Trouble::Window))
                {
                    return Ok(());
                }
                let got = data.len() as u32;
                if got < len
                    && a.trouble.is_none()
                    && let FileState::Reading { handle } = &a.state
                {
                    // A short read: ask for the rest (it is written in order).
                    let rest = offset + u64::from(got);
                    let id = self.wire.send_read(handle, rest, len - got);
                    self.ops.insert(
                        id,
                        Op::Read {
                            job: j,
                            offset: rest,
                            len: len - got,
                        },
                    );
                    a.reads_out += 1;
                    self.inflight += u64::from(len - got);
                }
                a.ahead.insert(offset, data);
                if let Err(e) = a.drain_in_order() {
                    if e.disposition() != Disposition::SkipFile {
                        return Err(self.landing_stop(j, e));
                    }
                    a.ahead.clear();
                    a.fail(Trouble::Local(e));
                    return Ok(());
                }
                self.read_this_attempt += u64::from(got);
                self.report.read_bytes += u64::from(got);
                self.ctx
                    .progress
                    .transferred_bytes
                    .fetch_add(u64::from(got), Ordering::Relaxed);
                (self.ctx.control.on_progress)(self.ctx.progress);
            }
            // Shrank since the listing.
            Response::Status {
                code: status::EOF, ..
            } => a.fail(Trouble::Changed),
            Response::Data(data) if data.is_empty() => a.fail(Trouble::Remote(format!(
                "the server answered the READ of {len} bytes at offset {offset} with no data \
                     (SFTP says end of file must be a status)"
            ))),
            Response::Data(data) => a.fail(Trouble::Remote(format!(
                "the server answered the READ of {len} bytes at offset {offset} with {} bytes, \
                     more than was asked for",
                data.len()
            ))),
            r => a.fail(Trouble::Remote(format!(
                "the READ of {len} bytes at offset {offset} failed: {}",
                r.describe()
            ))),
        }
        Ok(())
    }

    /// The answer to the READ at the listed end: it must be EOF.
    pub(super) fn end_answered(&mut self, j: usize, response: Response) -> Result<(), Stop> {
        let size = self.tree.jobs[j].size;
        let Some(a) = self.files.get_mut(&j) else {
            return Ok(());
        };
        match response {
            Response::Status {
                code: status::EOF, ..
            } => {
                if let FileState::Closing { ended, .. } = &mut a.state {
                    *ended = true;
                }
            }
            // More bytes than listed: it grew, or the server understated its size.
            Response::Data(_) => a.fail(Trouble::Changed),
            r => a.fail(Trouble::Remote(format!(
                "the READ at its listed end ({size} bytes) answered {} instead of end of file",
                r.describe()
            ))),
        }
        self.after_reads_answered(j)
    }

    pub(super) fn fstat_answered(&mut self, j: usize, response: Response) -> Result<(), Stop> {
        if let Some(a) = self.files.get_mut(&j)
            && let (FileState::Closing { fstat, .. }, Response::Attrs(attrs)) =
                (&mut a.state, response)
        {
            *fstat = Some(attrs);
        }
        self.after_reads_answered(j)
    }

    /// Counts one of the answers after a file's reads; with the last one in,
    /// the file is judged.
    pub(super) fn after_reads_answered(&mut self, j: usize) -> Result<(), Stop> {
        let last = self.files.get_mut(&j).is_some_and(|a| match &mut a.state {
            FileState::Closing { awaiting, .. } => {
                *awaiting = awaiting.saturating_sub(1);
                *awaiting == 0
            }
            _ => false,
        });
        if last && let Some(a) = self.files.remove(&j) {
            return self.file_read(j, a);
        }
        Ok(())
    }

    fn check_free_space(&self, next: u64) -> Result<(), Stop> {
        let min = self.ctx.config.transfer.min_free_bytes;
        let probe = &self.ctx.config.data_directory;
        // Files already admitted have not written all their bytes yet: the
        // disk must hold those too, or min_free_space is not kept.
        let in_progress: u64 = self
            .files
            .iter()
            .map(|(&j, a)| self.tree.jobs[j].size.saturating_sub(a.partial.offset()))
            .sum();
        let need = next.saturating_add(in_progress);
        match free_bytes(probe) {
            Ok(free) if free < need.saturating_add(min) => Err(Cause::DiskSpace {
                probe: probe.clone(),
                free,
                need,
                min,
            }
            .into()),
            Ok(_) => Ok(()),
            Err(source) => Err(Cause::FreeSpaceUnknown {
                probe: probe.clone(),
                source,
            }
            .into()),
        }
    }

    /// A local write, fsync or rename failed in a way that fails every
    /// further file too: the disk is full or failing.
    pub(super) fn landing_stop(&self, j: usize, source: LandingError) -> Stop {
        let path = crate::common::text::escape(self.tree.job_path(j).as_os_str());
        Cause::Landing { path, source }.into()
    }
}

impl Active {
    /// Writes the data that continues the partial file, in order.
    fn drain_in_order(&mut self) -> Result<(), LandingError> {
        while let Some(data) = self.ahead.remove(&self.partial.offset()) {
            self.partial.write_owned(data)?;
        }
        Ok(())
    }
}
