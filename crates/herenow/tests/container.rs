//! What can be checked of the container setup without a container engine (none is
//! reachable here): every variable that the Dockerfile and compose.yaml set is a real
//! herenow setting with a valid value, the HEALTHCHECK runs a real subcommand against the
//! port the image serves on, and the proxy points at the instances compose runs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::CommandFactory;
use herenow::config::{Cli, Command};

fn repo_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Environment variables that are not settings but are still fine to set.
const NOT_SETTINGS: [&str; 1] = ["RUST_LOG"];

/// Parse `env` as herenow would read it: each variable through the flag it stands for,
/// so an unknown name or a bad value fails here as it would at start.
fn settings_from(env: &BTreeMap<String, String>, what: &str) -> herenow::config::Config {
    let cmd = Cli::command();
    let mut args = vec!["herenow".to_string()];
    for (key, value) in env {
        if NOT_SETTINGS.contains(&key.as_str()) {
            continue;
        }
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == key.as_str()))
            .unwrap_or_else(|| panic!("{what} sets {key}, which is not a herenow setting"));
        args.push(format!("--{}={value}", arg.get_long().unwrap()));
    }
    let config = Cli::try_parse_from_env_free(&args)
        .unwrap_or_else(|e| panic!("{what}: {args:?} do not parse: {e}"))
        .config;
    config
        .check()
        .unwrap_or_else(|e| panic!("{what}: settings do not hold together: {e}"));
    config
}

/// The Dockerfile's final stage: its ENV variables, USER, EXPOSE and HEALTHCHECK command.
struct FinalStage {
    env: BTreeMap<String, String>,
    user: String,
    expose: Vec<u16>,
    healthcheck: Vec<String>,
}

fn final_stage(dockerfile: &str) -> FinalStage {
    // Continuation lines joined, comments dropped.
    let joined = dockerfile
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    let last_from = joined.rfind("\nFROM ").expect("a FROM");
    let mut stage = FinalStage {
        env: BTreeMap::new(),
        user: String::new(),
        expose: Vec::new(),
        healthcheck: Vec::new(),
    };
    for line in joined[last_from..].lines() {
        let (word, rest) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
        match word {
            "ENV" => {
                for pair in rest.split_whitespace() {
                    let (k, v) = pair.split_once('=').expect("ENV KEY=VALUE");
                    stage
                        .env
                        .insert(k.to_string(), v.trim_matches('"').to_string());
                }
            }
            "USER" => stage.user = rest.trim().to_string(),
            "EXPOSE" => {
                stage.expose = rest
                    .split_whitespace()
                    .map(|p| p.parse().unwrap())
                    .collect()
            }
            "HEALTHCHECK" => {
                let cmd = rest
                    .split_once("CMD")
                    .expect("HEALTHCHECK ... CMD")
                    .1
                    .trim();
                stage.healthcheck = serde_json::from_str(cmd).expect("CMD in exec form");
            }
            _ => {}
        }
    }
    stage
}

/// compose.yaml's services: for each, its `environment` map (the file keeps to the
/// block form `KEY: value`, which this reads by indentation).
fn compose_environments(compose: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let (mut in_services, mut service, mut in_env) = (false, None::<String>, false);
    for line in compose.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        match indent {
            0 => {
                in_services = text == "services:";
                service = None;
            }
            2 if in_services => {
                service = Some(text.trim_end_matches(':').to_string());
                in_env = false;
            }
            4 => in_env = text == "environment:",
            6 if in_env => {
                let (k, v) = text.split_once(": ").expect("KEY: value");
                let env = out
                    .entry(service.clone().expect("in a service"))
                    .or_default();
                env.insert(k.to_string(), v.trim_matches('"').to_string());
            }
            _ => {}
        }
    }
    out
}

#[test]
fn the_image_sets_real_settings_runs_as_a_user_and_checks_its_own_port() {
    let stage = final_stage(&repo_file("Dockerfile"));
    let config = settings_from(&stage.env, "the Dockerfile");
    assert!(!stage.user.is_empty() && stage.user != "root" && stage.user != "0");
    assert_eq!(
        stage.expose,
        vec![config.port],
        "EXPOSE is the PORT it serves on"
    );
    assert!(
        !config.dotenv,
        "a container takes its settings from its environment"
    );
    assert_eq!(config.static_dir.unwrap().to_str(), Some("/srv/herenow"));

    // The HEALTHCHECK is the subcommand, and it checks where the server listens.
    assert_eq!(stage.healthcheck, ["herenow", "healthcheck"]);
    let cli = Cli::try_parse_from_env_free(&stage.healthcheck).unwrap();
    assert!(matches!(cli.command, Some(Command::Healthcheck(_))));
    assert_eq!(
        herenow::healthcheck::default_url(config.host, config.port),
        format!("http://127.0.0.1:{}/server/healthz", config.port)
    );
}

#[test]
fn compose_runs_two_instances_on_one_redis_behind_the_proxy() {
    let compose = repo_file("compose.yaml");
    let envs = compose_environments(&compose);
    let instances: Vec<_> = envs.keys().filter(|s| s.starts_with("herenow-")).collect();
    assert_eq!(instances.len(), 2, "{envs:?}");
    let image = settings_from(&final_stage(&repo_file("Dockerfile")).env, "the Dockerfile");
    let caddy = repo_file("deploy/Caddyfile");
    let mut ids = Vec::new();
    for name in instances {
        let config = settings_from(&envs[name], &format!("compose.yaml's {name}"));
        assert_eq!(
            config.redis_url.as_deref(),
            Some("redis://redis:6379"),
            "{name}"
        );
        ids.push(config.instance_id.clone().expect("an INSTANCE_ID"));
        // The proxy reaches each instance where it listens.
        assert!(
            caddy.contains(&format!("{name}:{}", config.port)),
            "deploy/Caddyfile does not proxy to {name}:{}",
            config.port
        );
        assert_eq!(
            config.port, image.port,
            "{name} serves on the port the image exposes"
        );
    }
    ids.dedup();
    assert_eq!(ids.len(), 2, "each instance has its own INSTANCE_ID");
    assert!(envs.contains_key("redis") || compose.contains("\n  redis:\n"));
    assert!(compose.contains("\n  proxy:\n"));
    assert!(compose.contains("./deploy/Caddyfile:/etc/caddy/Caddyfile"));
}

#[test]
fn the_readers_of_this_test_see_what_they_should() {
    // A compose file this test cannot read would pass everything above vacuously.
    let envs = compose_environments("services:\n  a:\n    environment:\n      PORT: \"1\"\n");
    assert_eq!(envs["a"]["PORT"], "1");
    let stage = final_stage("FROM x\nENV A=1\nFROM y\nENV PORT=2 \\\n    HOST=::\nUSER u\n");
    assert_eq!(stage.env.len(), 2);
    assert_eq!(stage.user, "u");
}
