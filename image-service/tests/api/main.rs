mod corpus;
mod helpers;
mod processing;
mod uploads;
