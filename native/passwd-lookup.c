/*
 * passwd-lookup: answers OS account look-ups for the node service without a
 * process per look-up. It reads one login name per line on stdin and answers
 * each, in order, with one line on stdout, through getpwnam_r (NSS: files,
 * LDAP, sssd... exactly as getent and sshd see them, with nothing cached here):
 *
 *   ok<TAB>name<TAB>uid<TAB>gid<TAB>home<TAB>shell
 *   none                       no such account
 *   error<TAB>reason           the look-up failed (an NSS error, a malformed request,
 *                              an entry that cannot be sent on one line)
 *
 * It exits when stdin closes (its parent went away) or a write fails.
 */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_LINE 512

static int reply(const char *fmt, const char *a, const char *b) {
  if (printf(fmt, a, b) < 0) return -1;
  return fflush(stdout);
}

/* A field is sent as is only if it cannot break the framing. */
static int framable(const char *s) { return s && strpbrk(s, "\t\n\r") == NULL; }

static int answer(const char *name) {
  long size = sysconf(_SC_GETPW_R_SIZE_MAX);
  if (size < 1024) size = 16384;
  for (;;) {
    char *buf = malloc((size_t)size);
    if (!buf) return reply("error\t%s%s\n", "out of memory", "");
    struct passwd pw;
    struct passwd *found = NULL;
    int rc = getpwnam_r(name, &pw, buf, (size_t)size, &found);
    if (rc == ERANGE && size < (1L << 22)) {
      free(buf);
      size *= 2;
      continue;
    }
    int out;
    if (rc != 0) {
      out = reply("error\t%s%s\n", strerror(rc), "");
    } else if (!found) {
      out = reply("none%s%s\n", "", "");
    } else if (!framable(pw.pw_name) || !framable(pw.pw_dir) || !framable(pw.pw_shell)) {
      out = reply("error\t%s%s\n", "the account's entry has a tab or line break", "");
    } else {
      if (printf("ok\t%s\t%lu\t%lu\t%s\t%s\n", pw.pw_name, (unsigned long)pw.pw_uid, (unsigned long)pw.pw_gid, pw.pw_dir ? pw.pw_dir : "",
                 pw.pw_shell ? pw.pw_shell : "") < 0)
        out = -1;
      else
        out = fflush(stdout);
    }
    free(buf);
    return out;
  }
}

int main(void) {
  char line[MAX_LINE];
  while (fgets(line, sizeof line, stdin)) {
    size_t len = strlen(line);
    if (len == 0 || line[len - 1] != '\n') {
      /* Too long (or cut by EOF): drain the rest of the line and refuse it. */
      if (len == sizeof line - 1) {
        int c;
        while ((c = getchar()) != EOF && c != '\n') {
        }
      }
      if (reply("error\t%s%s\n", "malformed request", "") != 0) return 1;
      continue;
    }
    line[len - 1] = '\0';
    if (line[0] == '\0') {
      if (reply("error\t%s%s\n", "empty name", "") != 0) return 1;
      continue;
    }
    if (answer(line) != 0) return 1;
  }
  return 0;
}
