//! The original generator's environment variables, read as the defaults of `traffic`
//! so that a deployment's existing settings drive this one too; flags win over them.

use std::time::Duration;

use anyhow::Context;

/// The original's variables and their defaults.
pub const URL_VARIABLE: &str = "APP_URL";
pub const BATCH_SIZE_VARIABLE: &str = "APP_BATCH_SIZE";
pub const ITERATIONS_VARIABLE: &str = "APP_ITERATIONS";
pub const DELAY_VARIABLE: &str = "APP_DELAY_S";

/// The defaults of `traffic` when no flag is given.
#[derive(Clone, Debug, PartialEq)]
pub struct TrafficDefaults {
    pub url: String,
    pub batch_size: usize,
    pub iterations: u64,
    pub delay: Duration,
}

impl TrafficDefaults {
    /// From the given variables (`lookup` is `std::env::var` outside tests); a variable
    /// that is set but not a number is an error, not silently ignored.
    pub fn from_variables(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let whole = |name: &str, default: u64| -> anyhow::Result<u64> {
            match lookup(name) {
                Some(text) => text
                    .trim()
                    .parse::<u64>()
                    .with_context(|| format!("{name}={text:?} is not a whole number")),
                None => Ok(default),
            }
        };
        let seconds = lookup(DELAY_VARIABLE)
            .map(|text| {
                text.trim()
                    .parse::<f64>()
                    .with_context(|| format!("{DELAY_VARIABLE}={text:?} is not a number"))
            })
            .transpose()?;
        let delay = match seconds {
            Some(seconds) => Duration::try_from_secs_f64(seconds)
                .with_context(|| format!("{DELAY_VARIABLE} must be seconds, 0 or more"))?,
            None => Duration::from_millis(200),
        };
        Ok(Self {
            url: lookup(URL_VARIABLE).unwrap_or_else(|| "http://127.0.0.1:8080".to_owned()),
            batch_size: usize::try_from(whole(BATCH_SIZE_VARIABLE, 10)?)?,
            iterations: whole(ITERATIONS_VARIABLE, 1000)?,
            delay,
        })
    }
}

/// The server's base URL from a URL given with or without the original's
/// `/api/event` path (its `APP_URL` names the endpoint itself).
pub fn base_url(url: &str) -> &str {
    let url = url.trim_end_matches('/');
    url.strip_suffix("/api/event").unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn defaults(variables: &[(&str, &str)]) -> anyhow::Result<TrafficDefaults> {
        let variables: HashMap<String, String> = variables
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        TrafficDefaults::from_variables(|name| variables.get(name).cloned())
    }

    #[test]
    fn without_variables_the_defaults_are_the_originals() {
        let defaults = defaults(&[]).unwrap();

        assert_eq!(defaults.batch_size, 10);
        assert_eq!(defaults.iterations, 1000);
        assert_eq!(defaults.delay, Duration::from_millis(200));
    }

    #[test]
    fn the_originals_variables_set_the_defaults() {
        let defaults = defaults(&[
            ("APP_URL", "http://collector:8080/api/event"),
            ("APP_BATCH_SIZE", "3"),
            ("APP_ITERATIONS", "7"),
            ("APP_DELAY_S", "0.05"),
        ])
        .unwrap();

        assert_eq!(defaults.url, "http://collector:8080/api/event");
        assert_eq!(defaults.batch_size, 3);
        assert_eq!(defaults.iterations, 7);
        assert_eq!(defaults.delay, Duration::from_millis(50));
    }

    #[test]
    fn a_variable_that_is_not_a_number_is_an_error() {
        for variable in [
            ("APP_BATCH_SIZE", "ten"),
            ("APP_ITERATIONS", "1.5"),
            ("APP_DELAY_S", "-1"),
        ] {
            assert!(defaults(&[variable]).is_err(), "{variable:?}");
        }
    }

    #[test]
    fn a_url_with_or_without_the_endpoint_path_gives_the_base() {
        for url in [
            "http://h:8080",
            "http://h:8080/",
            "http://h:8080/api/event",
            "http://h:8080/api/event/",
        ] {
            assert_eq!(base_url(url), "http://h:8080", "{url}");
        }
    }
}
