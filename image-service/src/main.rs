use image_service::{
    configuration::Settings, reconcile, startup::Application, storage::ObjectStore,
};

const RECONCILE_HELP: &str = "\
image-service reconcile [--delete]

Compares the bucket with the image database and prints objects no row
explains (leaks) and objects rows need that are missing. With --delete,
the unexplained objects are deleted. Exit status: 0 when nothing was
found (or everything found was deleted), 3 when something was found.
Reads the same settings as the service (see image-service --help).";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("reconcile")
        && args.iter().any(|a| a == "--help" || a == "-h")
    {
        println!("{RECONCILE_HELP}");
        return Ok(());
    }
    let (settings, rest) = infra::settings::from_args_or_exit::<Settings>(
        "\nCommands:\n  reconcile [--delete]   compare the bucket with the database (reconcile --help)",
    );
    let _telemetry = infra::telemetry::init("image-service", &settings.log);
    match rest.first().map(String::as_str) {
        None => {
            let cancel = infra::shutdown::on_signal(settings.shutdown.grace());
            Application::build(settings)
                .await?
                .run_until_stopped(cancel)
                .await
        }
        Some("reconcile") => {
            let delete = match &rest[1..] {
                [] => false,
                [flag] if flag == "--delete" => true,
                other => {
                    eprintln!("image-service reconcile: unexpected arguments {other:?}\n\n{RECONCILE_HELP}");
                    std::process::exit(2);
                }
            };
            let pool = sqlx::PgPool::connect(&settings.database.url).await?;
            let store = ObjectStore::new(settings.s3.client(), settings.s3.bucket.clone());
            let report = reconcile::reconcile(&pool, &store, delete).await?;
            print!("{report}");
            std::process::exit(if report.is_clean() { 0 } else { 3 });
        }
        Some(other) => {
            eprintln!("image-service: unknown command `{other}` (see --help)");
            std::process::exit(2);
        }
    }
}
