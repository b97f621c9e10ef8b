//! `--wait`: polls an instance until it reaches the state an operation leads to,
//! showing a spinner with the state as it changes (on a terminal only). Ctrl-C stops
//! the waiting, never the operation.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use cms_core::{Cloud, ErrorKind, Instance, InstanceState};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::Failure;

/// Where an operation ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    Running,
    Stopped,
    Gone,
}

impl Goal {
    fn reached(self, s: InstanceState) -> bool {
        match self {
            Goal::Running => s == InstanceState::Running,
            Goal::Stopped => matches!(s, InstanceState::Stopped | InstanceState::Suspended),
            Goal::Gone => s == InstanceState::Terminated,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Goal::Running => "running",
            Goal::Stopped => "stopped",
            Goal::Gone => "terminated",
        }
    }
}

/// Waits until `first` (the operation's answer) reaches `goal`, at most `limit`.
/// Returns the instance as it ended (a deleted instance that is gone answers as last
/// seen, `terminated`).
pub async fn wait(
    cloud: &Cloud,
    first: Instance,
    goal: Goal,
    limit: Duration,
) -> Result<Instance, Failure> {
    let spinner = if std::io::stderr().is_terminal() {
        let s = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        s.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        s.enable_steady_tick(Duration::from_millis(100));
        s
    } else {
        ProgressBar::hidden()
    };
    let id = first.id.clone();
    let show = |s: &ProgressBar, states: &[InstanceState]| {
        let path: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        s.set_message(format!(
            "waiting for {id} to be {}: {}",
            goal.word(),
            path.join(" → ")
        ));
    };
    let mut seen = vec![first.state];
    show(&spinner, &seen);
    let start = Instant::now();
    let mut last = first;
    let mut pause = Duration::from_millis(200);
    // One handler for the whole wait, so that a Ctrl-C during a request counts too.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let interrupted = |spinner: &ProgressBar, last: &Instance| {
        spinner.finish_and_clear();
        Failure::interrupted(format!(
            "stopped waiting: instance {id} is {}; the operation was not canceled and goes on",
            last.state
        ))
    };
    let outcome = loop {
        if goal.reached(last.state) {
            break Ok(last);
        }
        if last.state == InstanceState::Error {
            break Err(Failure::backend(format!(
                "instance {id} went into state error (the backend says `{}`)",
                last.raw_state
            )));
        }
        if start.elapsed() >= limit {
            break Err(Failure::other(format!(
                "gave up waiting after {}s: instance {id} is {}, not {} yet; the operation goes on",
                limit.as_secs(),
                last.state,
                goal.word()
            )));
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = &mut ctrl_c => return Err(interrupted(&spinner, &last)),
        }
        pause = (pause * 3 / 2).min(Duration::from_secs(2));
        let got = tokio::select! {
            r = cloud.get_instance(&id) => r,
            _ = &mut ctrl_c => return Err(interrupted(&spinner, &last)),
        };
        match got {
            Ok(i) => {
                if seen.last() != Some(&i.state) {
                    seen.push(i.state);
                    show(&spinner, &seen);
                }
                last = i;
            }
            Err(e) if e.kind() == ErrorKind::NotFound && goal == Goal::Gone => {
                last.state = InstanceState::Terminated;
                break Ok(last);
            }
            Err(e) => break Err(Failure::from_error(&e)),
        }
    };
    spinner.finish_and_clear();
    outcome
}

/// Where an action leads.
pub fn goal_of(action: cms_core::InstanceAction) -> Goal {
    match action {
        cms_core::InstanceAction::Stop => Goal::Stopped,
        cms_core::InstanceAction::Delete => Goal::Gone,
        cms_core::InstanceAction::Start | cms_core::InstanceAction::Reboot => Goal::Running,
    }
}

/// Parses `90`, `90s`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration such as 90s, 5m or 1h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("`{s}` is not a duration such as 90s, 5m or 1h")),
    };
    Ok(Duration::from_secs(secs))
}
