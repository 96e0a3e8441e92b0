mod corpus;
mod helpers;
mod orphans;
mod processing;
mod uploads;
