/*
 * cli — the subcommands of the scaleno binary. Each returns the process exit
 * code: 0 ok, 1 configuration or usage error, 2 runtime failure.
 */
#ifndef SCALENO_CLI_H
#define SCALENO_CLI_H

#define EXIT_OK 0
#define EXIT_USAGE 1
#define EXIT_RUNTIME 2

#include <stdbool.h>
#include <stdio.h>

struct config;

/*
 * Load the configuration at path (NULL: the default) for subcommand cmd,
 * without the Nomad secrets. EXIT_OK with *out set (caller frees with
 * config_free), or every error and "scaleno CMD: configuration is invalid"
 * on stderr and EXIT_USAGE.
 */
int cli_load_config(const char *cmd, const char *path, struct config **out);
/*
 * The operands of a command that takes -q QUEUE and nothing else: EXIT_OK
 * when qname is set and extra is false, else the reason and usage on
 * stderr and EXIT_USAGE.
 */
int cli_need_queue(const char *cmd, const char *qname, bool extra, void (*usage)(FILE *));

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
