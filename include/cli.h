/*
 * cli — the subcommands of the scaleno binary. Each returns the process exit
 * code: 0 ok, 1 configuration or usage error, 2 runtime failure.
 */
#ifndef SCALENO_CLI_H
#define SCALENO_CLI_H

#define EXIT_OK 0
#define EXIT_USAGE 1
#define EXIT_RUNTIME 2

int cmd_agent(int argc, char **argv);
int cmd_worker(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_dlq(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_publish(int argc, char **argv);
int cmd_simulate(int argc, char **argv);
int cmd_version(int argc, char **argv);

#endif
