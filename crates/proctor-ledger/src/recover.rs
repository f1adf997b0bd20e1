//! Recovery of abandoned executions: executions left `running` by a process that died
//! (killed, crashed, its machine rebooted) hold their write-prefix lease and their budget
//! reservation until someone settles them.
//!
//! `execution.start` records its owner ([`ExecutionOwner`]: host name, boot id, pid and
//! the process's start time). An owner is judged by [`owner_liveness`]: on this host and
//! boot, it is alive while a process with its pid *and* its start time exists (a reused pid
//! is another process); on another boot of this host it is dead; on another host it cannot
//! be judged here. [`Ledger::settle_abandoned`] settles one execution in one transaction on
//! its plan: its leases released (`lease.release`, reason `recovered`), its reservation
//! released (`budget.settle`: a `real` execution spends its reservation, since it may have
//! reached a paid provider; a `mock` one spends nothing) and the execution settled as a
//! failure with the given canonical error, so `ledger verify` and its table cross-checks
//! keep passing.

use std::io;

use proctor_contract::{CanonError, ErrorBody, ErrorCode, ExecutionOwner, LedgerEvent, Mode};
use proctor_contract::{LeaseReleaseReason, WorldPath};
use serde::Serialize;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use crate::error::{LedgerError, Result};
use crate::event::Appended;
use crate::executions::{
    Execution, ExecutionSettle, ExecutionStatus, Outcome, fetch_execution,
    fetch_running_executions, settle_in,
};
use crate::group::{PlanTxn, Write};
use crate::ledger::Ledger;

/// Where the host's boot id is read.
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";
/// Where the host's name is read.
const HOSTNAME_PATH: &str = "/proc/sys/kernel/hostname";
/// The 1-based field of `/proc/PID/stat` holding the process's start time.
const STAT_START_TIME_FIELD: usize = 22;

/// This process, as `execution.start` records its owner.
pub fn this_process() -> io::Result<ExecutionOwner> {
    let pid = std::process::id();
    let start_time = process_start_time(pid)?.ok_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, "this process has no /proc entry")
    })?;
    Ok(ExecutionOwner {
        hostname: read_trimmed(HOSTNAME_PATH)?,
        boot_id: read_trimmed(BOOT_ID_PATH)?,
        pid,
        start_time,
    })
}

fn read_trimmed(path: &str) -> io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_owned())
}

/// The start time (clock ticks since boot) of process `pid`, or `None` when there is no
/// such process.
pub fn process_start_time(pid: u32) -> io::Result<Option<u64>> {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    parse_start_time(&stat)
        .map(Some)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("/proc/{pid}/stat")))
}

/// Field 22 of a `/proc/PID/stat` line. The command name (field 2) is in parentheses and
/// may hold spaces and parentheses itself, so fields are counted after its last `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    // The fields after the name start at field 3.
    after_name
        .split_whitespace()
        .nth(STAT_START_TIME_FIELD - 3)?
        .parse()
        .ok()
}

/// What can be said here about an execution's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerLiveness {
    /// Its process is still running on this host.
    Alive,
    /// Its process is gone: no process with its pid and start time on this boot of this
    /// host, or it ran on an earlier boot.
    Dead,
    /// It runs on another host, whose processes cannot be seen from here.
    OtherHost,
    /// Its start recorded no owner (written before owners were recorded).
    Unrecorded,
}

/// Judges `owner` from `here` (this process, see [`this_process`]). A process whose
/// `/proc` entry cannot be read counts as alive: nothing is settled on a guess.
pub fn owner_liveness(owner: Option<&ExecutionOwner>, here: &ExecutionOwner) -> OwnerLiveness {
    let Some(owner) = owner else {
        return OwnerLiveness::Unrecorded;
    };
    if owner.hostname != here.hostname {
        return OwnerLiveness::OtherHost;
    }
    if owner.boot_id != here.boot_id {
        return OwnerLiveness::Dead;
    }
    match process_start_time(owner.pid) {
        Ok(Some(start_time)) if start_time == owner.start_time => OwnerLiveness::Alive,
        Ok(_) => OwnerLiveness::Dead,
        Err(_) => OwnerLiveness::Alive,
    }
}

/// An execution still `running` and the process its start names as its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunningExecution {
    /// The execution row.
    pub execution: Execution,
    /// Its owner, when its start recorded one.
    pub owner: Option<ExecutionOwner>,
}

/// What settling one abandoned execution recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettledAbandoned {
    /// The execution.
    pub execution_id: String,
    /// Its plan.
    pub plan: String,
    /// The leases released.
    pub released_leases: Vec<WorldPath>,
    /// The reservation released (0 when its budget was already settled).
    pub released_micro_usd: u64,
    /// What it was recorded to spend.
    pub spent_micro_usd: u64,
    /// The error it was settled with.
    pub error: ErrorBody,
    /// Where its `execution.settle.failure` landed.
    pub settled: Appended,
}

/// The canonical error an execution whose owner died is settled with.
pub fn abandoned_error(owner: Option<&ExecutionOwner>) -> CanonError {
    let detail = match owner {
        Some(owner) => format!(
            "process {} on `{}` (boot {}) ended without settling it",
            owner.pid, owner.hostname, owner.boot_id
        ),
        None => "its process ended without settling it".to_owned(),
    };
    CanonError::new(ErrorCode::Abandoned, detail)
}

impl Ledger {
    /// The executions still `running`, of `plan` or of every plan, with their owners: one
    /// indexed query, then the start event of each one found.
    pub async fn running_executions(&self, plan: Option<&str>) -> Result<Vec<RunningExecution>> {
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(|e| LedgerError::database("acquiring a connection", e))?;
        let executions = fetch_running_executions(&mut conn, plan).await?;
        drop(conn);
        let mut running = Vec::with_capacity(executions.len());
        for execution in executions {
            let owner = self.owner_of(&execution).await?;
            running.push(RunningExecution { execution, owner });
        }
        Ok(running)
    }

    /// The owner `execution.start` recorded for `execution`.
    async fn owner_of(&self, execution: &Execution) -> Result<Option<ExecutionOwner>> {
        for event in self.events_for_execution(&execution.execution_id).await? {
            if event.plan == execution.plan
                && let LedgerEvent::ExecutionStart(start) = event.ledger_event()?
            {
                return Ok(start.owner);
            }
        }
        Ok(None)
    }

    /// The executions still `running` (of `plan`, or of every plan) whose owner is dead as
    /// judged from `here` ([`owner_liveness`]); executions of other hosts, and those whose
    /// start recorded no owner, are not among them.
    pub async fn abandoned_executions(
        &self,
        plan: Option<&str>,
        here: &ExecutionOwner,
    ) -> Result<Vec<RunningExecution>> {
        let mut running = self.running_executions(plan).await?;
        running
            .retain(|running| owner_liveness(running.owner.as_ref(), here) == OwnerLiveness::Dead);
        Ok(running)
    }

    /// Finds the abandoned executions of `plan` (or of every plan) as judged from `here`
    /// and settles each with [`Ledger::settle_abandoned`] and `ERR_ABANDONED`.
    pub async fn recover_abandoned(
        &self,
        plan: Option<&str>,
        here: &ExecutionOwner,
    ) -> Result<Vec<SettledAbandoned>> {
        let mut settled = Vec::new();
        for abandoned in self.abandoned_executions(plan, here).await? {
            let error = abandoned_error(abandoned.owner.as_ref());
            let execution_id = &abandoned.execution.execution_id;
            if let Some(done) = self.settle_abandoned(execution_id, &error).await? {
                settled.push(done);
            }
        }
        Ok(settled)
    }

    /// Settles `execution_id`, whatever its owner, in one transaction on its plan: releases
    /// the leases it holds there, releases its reservation (see the module's cost rule) and
    /// settles it as a failure with `error`. `None` when it is no longer running (someone
    /// settled it first); an unknown execution is `ERR_LEDGER`.
    pub async fn settle_abandoned(
        &self,
        execution_id: &str,
        error: &CanonError,
    ) -> Result<Option<SettledAbandoned>> {
        let plan = self
            .execution(execution_id)
            .await?
            .ok_or_else(|| LedgerError::ledger(format!("unknown execution `{execution_id}`")))?
            .plan;
        let settled = self
            .write(Write::SettleAbandoned {
                plan: plan.clone(),
                execution_id: execution_id.to_owned(),
                error: error.clone(),
            })
            .await?
            .abandoned()?;
        if let Some(settled) = &settled {
            tracing::debug!(
                event = "ledger.settle_abandoned",
                execution_id,
                plan,
                code = %settled.error.code,
                leases = settled.released_leases.len(),
                released_micro_usd = settled.released_micro_usd,
            );
        }
        Ok(settled)
    }
}

/// Settles `execution_id` in `txn` (which holds its plan and the lease lock) as
/// [`Ledger::settle_abandoned`] describes; `None` when it is no longer running.
pub(crate) async fn settle_abandoned_in(
    txn: &mut PlanTxn<'_>,
    execution_id: &str,
    error: &CanonError,
) -> Result<Option<SettledAbandoned>> {
    let Some(execution) = fetch_execution(txn.conn(), execution_id).await? else {
        return Ok(None);
    };
    if execution.status != ExecutionStatus::Running {
        return Ok(None);
    }
    let released_leases =
        crate::leases::release_all_in(txn, execution_id, LeaseReleaseReason::Recovered).await?;
    let (released_micro_usd, spent_micro_usd) = match execution.spent_micro_usd {
        Some(spent) => (0, spent),
        None => {
            let reserved = execution.reserved_micro_usd;
            let spent = match execution.mode {
                Mode::Real => reserved,
                Mode::Mock => 0,
            };
            crate::budget::settle_in(txn, execution_id, spent).await?;
            (reserved, spent)
        }
    };
    let settle = ExecutionSettle {
        execution_id: execution_id.to_owned(),
        outcome: Outcome::Failure(error.clone()),
        image_digest: None,
        duration_ms: millis_since(&execution.started_at, OffsetDateTime::now_utc()),
    };
    let settled = settle_in(txn, &settle).await?;
    Ok(Some(SettledAbandoned {
        execution_id: execution_id.to_owned(),
        plan: txn.key.clone(),
        released_leases,
        released_micro_usd,
        spent_micro_usd,
        error: ErrorBody {
            code: error.code(),
            message: error.message(),
        },
        settled,
    }))
}

/// Milliseconds from `started_at` (a stored timestamp, `2026-01-02T03:04:05.678Z`) to
/// `now`; 0 when it does not parse or lies ahead.
fn millis_since(started_at: &str, now: OffsetDateTime) -> u64 {
    let number = |range: std::ops::Range<usize>| started_at.get(range)?.parse::<u32>().ok();
    let started = (|| {
        let month = Month::try_from(u8::try_from(number(5..7)?).ok()?).ok()?;
        let year = i32::try_from(number(0..4)?).ok()?;
        let date = Date::from_calendar_date(year, month, u8::try_from(number(8..10)?).ok()?);
        let time = Time::from_hms_milli(
            u8::try_from(number(11..13)?).ok()?,
            u8::try_from(number(14..16)?).ok()?,
            u8::try_from(number(17..19)?).ok()?,
            u16::try_from(number(20..23)?).ok()?,
        );
        Some(PrimitiveDateTime::new(date.ok()?, time.ok()?).assume_utc())
    })();
    started
        .map(|started| (now - started).whole_milliseconds())
        .and_then(|millis| u64::try_from(millis).ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_time_is_field_22_counted_after_the_command_name() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 98765 \
                    1000 200 18446744073709551615";
        assert_eq!(parse_start_time(stat), Some(98_765));
        assert_eq!(parse_start_time("4242 (x) S 1"), None);
        assert_eq!(parse_start_time("no name"), None);
    }

    #[test]
    fn this_process_is_alive_and_its_impostors_are_not() {
        let here = this_process().unwrap();
        assert_eq!(owner_liveness(Some(&here), &here), OwnerLiveness::Alive);
        assert_eq!(owner_liveness(None, &here), OwnerLiveness::Unrecorded);
        let reused_pid = ExecutionOwner {
            start_time: here.start_time + 1,
            ..here.clone()
        };
        assert_eq!(
            owner_liveness(Some(&reused_pid), &here),
            OwnerLiveness::Dead
        );
        let earlier_boot = ExecutionOwner {
            boot_id: "another-boot".to_owned(),
            ..here.clone()
        };
        assert_eq!(
            owner_liveness(Some(&earlier_boot), &here),
            OwnerLiveness::Dead
        );
        let elsewhere = ExecutionOwner {
            hostname: format!("{}-elsewhere", here.hostname),
            ..here.clone()
        };
        assert_eq!(
            owner_liveness(Some(&elsewhere), &here),
            OwnerLiveness::OtherHost
        );
    }

    #[test]
    fn durations_count_from_the_stored_start() {
        let now = PrimitiveDateTime::new(
            Date::from_calendar_date(2026, Month::January, 2).unwrap(),
            Time::from_hms_milli(3, 4, 6, 0).unwrap(),
        )
        .assume_utc();
        assert_eq!(millis_since("2026-01-02T03:04:05.678Z", now), 322);
        assert_eq!(millis_since("2026-01-02T03:04:07.000Z", now), 0);
        assert_eq!(millis_since("garbage", now), 0);
    }
}
