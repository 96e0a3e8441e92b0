use post_service::{configuration::Settings, startup::Application};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = match infra::settings::from_args::<Settings>(std::env::args().skip(1)) {
        Ok(infra::settings::Invocation::Run { settings, .. }) => settings,
        Ok(infra::settings::Invocation::Help(text)) => {
            println!("{text}");
            return Ok(());
        }
        Err(message) => {
            eprintln!("post-service: {message}");
            std::process::exit(2);
        }
    };
    infra::telemetry::init(&settings.log);
    let cancel = infra::shutdown::on_signal();
    Application::build(settings)
        .await?
        .run_until_stopped(cancel)
        .await
}
