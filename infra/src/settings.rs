//! Layered, typed settings: compiled-in defaults, then an optional TOML file
//! (`--config FILE` or `<PREFIX>_CONFIG`), then environment variables
//! `<PREFIX>_<SECTION>__<KEY>`. Invalid settings stop start-up with a message
//! naming the setting; `--help` lists every setting with its default.
use serde::{de::DeserializeOwned, Serialize};

/// A program's settings.
pub trait Settings: Serialize + DeserializeOwned + Default {
    /// Environment prefix, e.g. `POST`.
    const PREFIX: &'static str;
    /// Program name for `--help`.
    const PROGRAM: &'static str;
    /// One line of help per setting key (dotted, e.g. `database.url`).
    const DOCS: &'static [(&'static str, &'static str)];
    /// Checks values that parse but make no sense; the error names the setting.
    fn validate(&self) -> Result<(), String>;
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Invocation<T> {
    /// Run with these settings; `rest` holds arguments not about settings.
    Run { settings: T, rest: Vec<String> },
    /// Print this text and exit successfully.
    Help(String),
}

/// Reads settings for the process from its arguments and environment.
pub fn from_args<T: Settings>(
    args: impl IntoIterator<Item = String>,
) -> Result<Invocation<T>, String> {
    let mut file = std::env::var(format!("{}_CONFIG", T::PREFIX)).ok();
    let mut rest = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Invocation::Help(help::<T>())),
            "--config" => {
                file = Some(args.next().ok_or("--config needs a file path")?);
            }
            _ => match arg.strip_prefix("--config=") {
                Some(path) => file = Some(path.to_owned()),
                None => rest.push(arg),
            },
        }
    }
    let settings = load::<T>(file.as_deref(), std::env::vars())?;
    Ok(Invocation::Run { settings, rest })
}

/// Reads settings for the process as [`from_args`] does; prints `--help`
/// and exits 0, or prints the error and exits 2. Returns the settings and
/// the arguments that are not about settings.
pub fn from_args_or_exit<T: Settings>(help_footer: &str) -> (T, Vec<String>) {
    match from_args::<T>(std::env::args().skip(1)) {
        Ok(Invocation::Run { settings, rest }) => (settings, rest),
        Ok(Invocation::Help(text)) => {
            println!("{text}{help_footer}");
            std::process::exit(0);
        }
        Err(message) => {
            eprintln!("{}: {message}", T::PROGRAM);
            std::process::exit(2);
        }
    }
}

/// Builds settings from defaults, an optional file and the given environment.
pub fn load<T: Settings>(
    file: Option<&str>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, String> {
    let defaults = config::Config::try_from(&T::default())
        .map_err(|e| format!("internal: default settings do not serialise: {e}"))?;
    let mut builder = config::Config::builder().add_source(defaults);
    if let Some(path) = file {
        builder =
            builder.add_source(config::File::new(path, config::FileFormat::Toml).required(true));
    }
    let prefixed: config::Map<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(&format!("{}_", T::PREFIX)))
        .collect();
    let mut environment = config::Environment::with_prefix(T::PREFIX)
        .prefix_separator("_")
        .separator("__")
        .try_parsing(true)
        .source(Some(prefixed));
    let list_keys = list_keys::<T>();
    if !list_keys.is_empty() {
        environment = environment.list_separator(",");
        for key in list_keys {
            environment = environment.with_list_parse_key(&key);
        }
    }
    let settings: T = builder
        .add_source(environment)
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| format!("invalid configuration: {e}"))?;
    settings.validate()?;
    Ok(settings)
}

/// Every setting key with its default, flattened (`section.key`).
pub fn keys<T: Settings>() -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    let value = serde_json::to_value(T::default()).expect("settings serialise");
    flatten("", &value, &mut out);
    out
}

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => out.push((prefix.to_owned(), other.clone())),
    }
}

fn list_keys<T: Settings>() -> Vec<String> {
    keys::<T>()
        .into_iter()
        .filter(|(_, v)| v.is_array())
        .map(|(k, _)| k)
        .collect()
}

/// The environment variable that sets `key`.
pub fn env_var<T: Settings>(key: &str) -> String {
    format!("{}_{}", T::PREFIX, key.replace('.', "__").to_uppercase())
}

/// Keys without a line of help; a test per program keeps this empty.
pub fn undocumented<T: Settings>() -> Vec<String> {
    keys::<T>()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| !T::DOCS.iter().any(|(d, _)| d == k))
        .collect()
}

/// The `--help` text: usage and every setting with its variable and default.
pub fn help<T: Settings>() -> String {
    let mut text = format!(
        "{program}\n\nUsage: {program} [--config FILE.toml]\n\n\
         Settings are read from defaults, then the TOML file given by --config\n\
         or {prefix}_CONFIG, then environment variables. Lists in variables are\n\
         comma-separated.\n\nSettings:\n",
        program = T::PROGRAM,
        prefix = T::PREFIX
    );
    for (key, default) in keys::<T>() {
        let doc = T::DOCS
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, d)| *d)
            .unwrap_or("");
        let default = match default {
            serde_json::Value::String(s) if s.is_empty() => "(none)".to_owned(),
            serde_json::Value::String(s) => s,
            serde_json::Value::Null => "(none)".to_owned(),
            other => other.to_string(),
        };
        text.push_str(&format!(
            "  {key}\n      env {env}, default {default}\n      {doc}\n",
            env = env_var::<T>(&key)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize)]
    #[serde(default)]
    struct Example {
        server: Server,
        urls: Vec<String>,
    }

    #[derive(Debug, Serialize, Deserialize)]
    #[serde(default)]
    struct Server {
        port: u16,
        name: String,
    }

    impl Default for Example {
        fn default() -> Self {
            Self {
                server: Server {
                    port: 80,
                    name: "x".into(),
                },
                urls: vec!["a".into()],
            }
        }
    }

    impl Default for Server {
        fn default() -> Self {
            Example::default().server
        }
    }

    impl Settings for Example {
        const PREFIX: &'static str = "EX";
        const PROGRAM: &'static str = "example";
        const DOCS: &'static [(&'static str, &'static str)] = &[
            ("server.port", "port"),
            ("server.name", "name"),
            ("urls", "urls"),
        ];
        fn validate(&self) -> Result<(), String> {
            if self.server.port == 0 {
                return Err("setting server.port (EX_SERVER__PORT) must not be 0".into());
            }
            Ok(())
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn environment_overrides_defaults_and_lists_split_on_commas() {
        let s: Example = load(
            None,
            env(&[
                ("EX_SERVER__PORT", "8081"),
                ("EX_URLS", "p,q"),
                ("OTHER_X", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.port, 8081);
        assert_eq!(s.server.name, "x");
        assert_eq!(s.urls, vec!["p", "q"]);
    }

    #[test]
    fn a_bad_value_names_the_setting() {
        let err = load::<Example>(None, env(&[("EX_SERVER__PORT", "eighty")])).unwrap_err();
        assert!(err.contains("server.port"), "{err}");
        let err = load::<Example>(None, env(&[("EX_SERVER__PORT", "0")])).unwrap_err();
        assert!(err.contains("EX_SERVER__PORT"), "{err}");
    }

    #[test]
    fn a_file_sits_between_defaults_and_environment() {
        let dir = std::env::temp_dir().join(format!("settings-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.toml");
        std::fs::write(&path, "[server]\nport = 9000\nname = \"file\"\n").unwrap();
        let s: Example = load(
            Some(path.to_str().unwrap()),
            env(&[("EX_SERVER__NAME", "env")]),
        )
        .unwrap();
        assert_eq!((s.server.port, s.server.name.as_str()), (9000, "env"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn help_lists_every_setting_with_its_variable() {
        let text = help::<Example>();
        for var in ["EX_SERVER__PORT", "EX_SERVER__NAME", "EX_URLS"] {
            assert!(text.contains(var), "{var} missing from:\n{text}");
        }
        assert!(undocumented::<Example>().is_empty());
    }
}
