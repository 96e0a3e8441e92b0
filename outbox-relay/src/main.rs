use outbox_relay::{configuration::Settings, dlq, startup::Application};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("dlq")
        && args.iter().any(|a| a == "--help" || a == "-h")
    {
        println!("{}", dlq::HELP);
        return Ok(());
    }
    let (settings, rest) = infra::settings::from_args_or_exit::<Settings>(
        "\nCommands:\n  dlq <stats|list|show|replay|discard> [options]   dead letters (dlq --help)",
    );
    if rest.first().map(String::as_str) == Some("dlq") {
        std::process::exit(dlq::run(&settings, &rest[1..]).await);
    }
    if let Some(other) = rest.first() {
        eprintln!("outbox-relay: unknown command `{other}` (see --help)");
        std::process::exit(2);
    }
    let _telemetry = infra::telemetry::init("outbox-relay", &settings.log);
    let cancel = infra::shutdown::on_signal(settings.shutdown.grace());
    Application::build(settings)
        .await?
        .run_until_stopped(cancel)
        .await
}
