/*
 * signals.c -- SIGINT, SIGTERM and SIGHUP in the kvi command.  The handlers
 * only note the signal; whoever waits (the shell reading a line, the wait
 * for the default store's lock) sees it through kvi__cli_signal() and
 * returns, and main then closes the store -- the local engine writes its
 * snapshot -- and exits with 128 + the signal's number.  SA_RESTART keeps
 * the library's own system calls going; the waits use poll() and timed
 * retries, which a signal interrupts regardless.
 */
#include <signal.h>
#include <string.h>

#include "cli.h"

static volatile sig_atomic_t pending;

static void note(int sig)
{
    pending = sig;
}

void kvi__cli_signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = note;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

int kvi__cli_signal(void)
{
    return (int)pending;
}

void kvi__cli_signal_clear(void)
{
    pending = 0;
}
