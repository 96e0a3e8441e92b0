use post_service::{configuration::Settings, startup::Application};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (settings, _) = infra::settings::from_args_or_exit::<Settings>("");
    let _telemetry = infra::telemetry::init("post-service", &settings.log);
    let cancel = infra::shutdown::on_signal(settings.shutdown.grace());
    Application::build(settings)
        .await?
        .run_until_stopped(cancel)
        .await
}
