mod corpus;
mod helpers;
mod orphans;
mod presigned;
mod processing;
mod reprocess;
mod sweep_plan;
mod uploads;
