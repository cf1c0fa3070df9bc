/* sql_log.c -- counts the queries at the database: an LD_PRELOAD library for
 * the Kamailio tests and the SIP benchmark.  Kamailio's db_sqlite runs every
 * query through sqlite3_step(); this wraps it and, on the first step of a
 * statement (the query reaching SQLite), appends the statement with its bound
 * values (sqlite3_expanded_sql) as one line to the file $KVI_SQL_LOG.  The
 * Lua script cannot miscount what it does not count.  One write(2) per line
 * with O_APPEND: the lines of several processes never interleave.
 * Nothing is logged without KVI_SQL_LOG; a statement longer than the buffer
 * is cut (the table and the user come first). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct sqlite3_stmt sqlite3_stmt;
typedef int step_fn(sqlite3_stmt *);
typedef int busy_fn(sqlite3_stmt *);
typedef char *expanded_fn(sqlite3_stmt *);
typedef void free_fn(void *);

__attribute__((visibility("default"))) int sqlite3_step(sqlite3_stmt *stmt);

/* libsqlite3 is loaded by db_sqlite.so (dlopen, local scope), after this
 * library: RTLD_NEXT and RTLD_DEFAULT do not see it, a handle does. */
static void *sqlite_handle(void)
{
    static void *handle;
    if (handle == NULL)
        handle = dlopen("libsqlite3.so.0", RTLD_NOW | RTLD_NOLOAD);
    return handle;
}

static void log_statement(void *lib, sqlite3_stmt *stmt)
{
    const char *path = getenv("KVI_SQL_LOG");
    if (path == NULL || *path == '\0')
        return;
    busy_fn *busy = (busy_fn *)dlsym(lib, "sqlite3_stmt_busy");
    expanded_fn *expanded = (expanded_fn *)dlsym(lib, "sqlite3_expanded_sql");
    free_fn *release = (free_fn *)dlsym(lib, "sqlite3_free");
    if (busy == NULL || expanded == NULL || release == NULL || busy(stmt))
        return;
    char *sql = expanded(stmt);
    if (sql == NULL)
        return;
    char line[1024];
    size_t n = strlen(sql);
    if (n > sizeof line - 1)
        n = sizeof line - 1;
    for (size_t i = 0; i < n; i++)
        line[i] = (sql[i] == '\n' || sql[i] == '\r') ? ' ' : sql[i];
    line[n++] = '\n';
    release(sql);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    ssize_t w = write(fd, line, n);
    (void)w;
    close(fd);
}

int sqlite3_step(sqlite3_stmt *stmt)
{
    void *lib = sqlite_handle();
    step_fn *next = lib ? (step_fn *)dlsym(lib, "sqlite3_step") : NULL;
    if (next == NULL || next == sqlite3_step)
        abort(); /* cannot happen: only a program linked with SQLite calls this */
    log_statement(lib, stmt);
    return next(stmt);
}
