//! Realistic, reproducible events made with the `fake` crate.
//!
//! Every event is built through audit-core's validated constructors, so the generator
//! cannot make an event the server would refuse. The same seed gives the same stream.

use fake::Fake;
use fake::faker::internet::en::{IPv4, IPv6, SafeEmail, UserAgent};
use fake::faker::lorem::en::Word;
use rand::distr::Alphanumeric;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use time::OffsetDateTime;

use audit_core::event::{ApplicationName, EventKind, NameError, NewEvent, Payload};
use audit_core::timestamp::EventTimestamp;

/// The original generator's applications and kinds: the defaults.
pub const DEFAULT_APPLICATIONS: &[&str] = &["grease_monkey", "cauliflower", "death_star"];
pub const DEFAULT_KINDS: &[&str] = &["UserLogin", "UserCreated", "UserLogout"];

/// Where event timestamps come from.
#[derive(Clone, Copy, Debug)]
pub enum Timestamps {
    /// The current time, as the original generator did.
    Now,
    /// Uniformly spread over `[start, end)`.
    Between(EventTimestamp, EventTimestamp),
}

/// The shape of payloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadStyle {
    /// `{"username": "user_<8 alphanumerics>"}`, exactly as the original.
    Original,
    /// The original's username plus e-mail, addresses, user agents, resources and
    /// nested objects, varying by event kind.
    Rich,
}

/// How often each application is picked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mix {
    /// Each as often as the others.
    #[default]
    Uniform,
    /// The n-th application 1/n as often as the first (Zipf, s = 1), as in a real
    /// fleet: a few loud applications and a long tail of quiet ones.
    Skewed,
}

pub struct EventFactory {
    rng: StdRng,
    applications: Vec<ApplicationName>,
    /// The running sums of the applications' weights, when the mix is skewed.
    application_weights: Option<Vec<f64>>,
    kinds: Vec<EventKind>,
    timestamps: Timestamps,
    style: PayloadStyle,
}

impl EventFactory {
    pub fn new(
        seed: u64,
        applications: &[String],
        kinds: &[String],
        timestamps: Timestamps,
        style: PayloadStyle,
    ) -> Result<Self, NameError> {
        let applications = applications
            .iter()
            .map(|name| ApplicationName::parse(name.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let kinds = kinds
            .iter()
            .map(|kind| EventKind::parse(kind.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        if applications.is_empty() || kinds.is_empty() {
            return Err(NameError::Empty);
        }
        Ok(Self {
            rng: StdRng::seed_from_u64(seed),
            applications,
            application_weights: None,
            kinds,
            timestamps,
            style,
        })
    }

    /// Picks applications with this mix from now on.
    pub fn with_mix(mut self, mix: Mix) -> Self {
        self.application_weights = match mix {
            Mix::Uniform => None,
            Mix::Skewed => Some(
                (1..=self.applications.len())
                    .scan(0.0, |sum, rank| {
                        *sum += 1.0 / rank as f64;
                        Some(*sum)
                    })
                    .collect(),
            ),
        };
        self
    }

    fn next_application(&mut self) -> usize {
        match &self.application_weights {
            None => self.rng.random_range(0..self.applications.len()),
            Some(sums) => {
                let total = sums.last().copied().unwrap_or(0.0);
                let drawn = self.rng.random::<f64>() * total;
                sums.partition_point(|sum| *sum <= drawn)
                    .min(self.applications.len() - 1)
            }
        }
    }

    pub fn next_event(&mut self) -> NewEvent {
        let application = self.next_application();
        let application_name = self.applications[application].clone();
        let event_kind = self.kinds[self.rng.random_range(0..self.kinds.len())].clone();
        let event_ts = self.next_timestamp();
        let value = match self.style {
            PayloadStyle::Original => json!({ "username": self.username() }),
            PayloadStyle::Rich => self.rich_payload(event_kind.as_str()),
        };
        // Generated payloads are small, shallow, NUL-free strings and small numbers,
        // which the payload rules always take; a property test checks it over seeds.
        #[allow(clippy::expect_used)]
        let payload = Payload::from_value(&value).expect("generated payloads are valid");
        NewEvent {
            event_ts,
            application_name,
            event_kind,
            payload,
        }
    }

    pub fn batch(&mut self, size: usize) -> Vec<NewEvent> {
        (0..size).map(|_| self.next_event()).collect()
    }

    fn next_timestamp(&mut self) -> EventTimestamp {
        match self.timestamps {
            Timestamps::Now => EventTimestamp::now(),
            Timestamps::Between(start, end) => {
                let start = start.as_offset_date_time();
                let span = (end.as_offset_date_time() - start)
                    .whole_microseconds()
                    .max(1);
                // A span of years 0000-9999 is far below 2^63 microseconds.
                let offset = self
                    .rng
                    .random_range(0..i64::try_from(span).unwrap_or(i64::MAX));
                let value = start + time::Duration::microseconds(offset);
                EventTimestamp::from_offset_date_time(value)
                    .unwrap_or_else(|_| EventTimestamp::now())
            }
        }
    }

    fn username(&mut self) -> String {
        let suffix: String = (&mut self.rng)
            .sample_iter(Alphanumeric)
            .take(8)
            .map(char::from)
            .collect();
        format!("user_{suffix}")
    }

    fn rich_payload(&mut self, kind: &str) -> Value {
        let rng = &mut self.rng;
        let username = {
            let suffix: String = (&mut *rng)
                .sample_iter(Alphanumeric)
                .take(8)
                .map(char::from)
                .collect();
            format!("user_{suffix}")
        };
        let email: String = SafeEmail().fake_with_rng(rng);
        let ip: String = if rng.random_bool(0.8) {
            IPv4().fake_with_rng(rng)
        } else {
            IPv6().fake_with_rng(rng)
        };
        let user_agent: String = UserAgent().fake_with_rng(rng);
        let request_id = format!("{:016x}{:016x}", rng.random::<u64>(), rng.random::<u64>());
        match kind {
            "UserLogin" => json!({
                "username": username,
                "email": email,
                "ip": ip,
                "user_agent": user_agent,
                "session": { "id": request_id, "mfa": rng.random_bool(0.6) },
            }),
            "UserCreated" => {
                let roles: Vec<&str> = ["viewer", "editor", "admin", "billing"]
                    .into_iter()
                    .filter(|_| rng.random_bool(0.4))
                    .collect();
                json!({
                    "username": username,
                    "email": email,
                    "created_by": { "ip": ip, "user_agent": user_agent },
                    "roles": roles,
                    "request_id": request_id,
                })
            }
            "UserLogout" => json!({
                "username": username,
                "ip": ip,
                "session": { "id": request_id, "duration_s": rng.random_range(1..86_400) },
            }),
            _ => {
                let resource_type: String = Word().fake_with_rng(rng);
                json!({
                    "username": username,
                    "email": email,
                    "ip": ip,
                    "user_agent": user_agent,
                    "resource": { "type": resource_type, "id": rng.random_range(1..10_000_000u64) },
                    "request_id": request_id,
                })
            }
        }
    }
}

/// A fresh seed for runs that do not name one; printed so the run can be repeated.
pub fn random_seed() -> u64 {
    // Only the low bits matter for a seed: the truncation is the point.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let now = OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;
    now ^ rand::random::<u64>()
}

#[cfg(test)]
mod tests {
    use audit_core::batch::{BatchLimits, parse_events};
    use proptest::prelude::*;

    use super::*;

    fn names(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| value.to_string()).collect()
    }

    fn factory(seed: u64, style: PayloadStyle) -> EventFactory {
        EventFactory::new(
            seed,
            &names(DEFAULT_APPLICATIONS),
            &names(&["UserLogin", "UserCreated", "UserLogout", "FileShared"]),
            Timestamps::Now,
            style,
        )
        .unwrap()
    }

    #[test]
    fn the_same_seed_gives_the_same_payloads() {
        let first: Vec<String> = factory(7, PayloadStyle::Rich)
            .batch(50)
            .iter()
            .map(|event| event.payload.as_json_text().to_owned())
            .collect();
        let second: Vec<String> = factory(7, PayloadStyle::Rich)
            .batch(50)
            .iter()
            .map(|event| event.payload.as_json_text().to_owned())
            .collect();
        let other: Vec<String> = factory(8, PayloadStyle::Rich)
            .batch(50)
            .iter()
            .map(|event| event.payload.as_json_text().to_owned())
            .collect();

        assert_eq!(first, second);
        assert_ne!(first, other);
    }

    #[test]
    fn original_payloads_are_a_username_of_eight_alphanumerics() {
        let event = factory(1, PayloadStyle::Original).next_event();

        let payload: Value = serde_json::from_str(event.payload.as_json_text()).unwrap();
        let username = payload["username"].as_str().unwrap();
        assert_eq!(payload.as_object().unwrap().len(), 1);
        assert_eq!(username.len(), 13);
        assert!(username.starts_with("user_"));
        assert!(username[5..].chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn timestamps_in_a_range_stay_inside_it() {
        let start = EventTimestamp::parse("2024-01-01T00:00:00Z").unwrap();
        let end = EventTimestamp::parse("2024-01-02T00:00:00Z").unwrap();
        let mut factory = EventFactory::new(
            3,
            &names(&["a"]),
            &names(&["k"]),
            Timestamps::Between(start, end),
            PayloadStyle::Rich,
        )
        .unwrap();

        for event in factory.batch(1000) {
            assert!(event.event_ts >= start && event.event_ts < end);
        }
    }

    #[test]
    fn a_skewed_mix_picks_the_nth_application_about_one_nth_as_often_as_the_first() {
        let applications: Vec<String> = (1..=10).map(|n| format!("app-{n}")).collect();
        let mut factory = EventFactory::new(
            4,
            &applications,
            &names(&["k"]),
            Timestamps::Now,
            PayloadStyle::Original,
        )
        .unwrap()
        .with_mix(Mix::Skewed);

        let mut counts = std::collections::HashMap::new();
        for event in factory.batch(20_000) {
            *counts
                .entry(event.application_name.as_str().to_owned())
                .or_insert(0u32) += 1;
        }
        let (first, fifth, tenth) = (counts["app-1"], counts["app-5"], counts["app-10"]);
        // Expected 5x and 10x; a wide margin keeps this about the shape, not the luck.
        assert!(
            (4.0..6.5).contains(&(f64::from(first) / f64::from(fifth))),
            "{counts:?}"
        );
        assert!(
            (8.0..13.0).contains(&(f64::from(first) / f64::from(tenth))),
            "{counts:?}"
        );
    }

    #[test]
    fn invalid_names_are_refused() {
        let too_long = vec!["a".repeat(126)];
        assert!(
            EventFactory::new(
                1,
                &too_long,
                &names(&["k"]),
                Timestamps::Now,
                PayloadStyle::Rich
            )
            .is_err()
        );
        assert!(
            EventFactory::new(1, &[], &names(&["k"]), Timestamps::Now, PayloadStyle::Rich).is_err()
        );
    }

    proptest! {
        // The generator's output, as JSON, must pass the server's own parser for any seed.
        #[test]
        fn generated_batches_pass_the_servers_validation(seed in any::<u64>(), rich in any::<bool>()) {
            let style = if rich { PayloadStyle::Rich } else { PayloadStyle::Original };
            let batch = factory(seed, style).batch(20);
            let body = serde_json::to_vec(&batch).unwrap();

            let limits = BatchLimits::DEFAULT;
            let parsed = parse_events(&body, limits).map_err(|error| error.to_string());

            prop_assert_eq!(parsed, Ok(batch));
        }
    }
}
