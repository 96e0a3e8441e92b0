mod corpus;
mod helpers;
mod orphans;
mod presigned;
mod processing;
mod uploads;
