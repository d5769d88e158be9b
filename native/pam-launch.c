/*
 * pam-launch: runs a program as a user inside a PAM session. It is the node
 * service's PAM integration (ssh_service.pam): like sshd, the account check
 * and the session live in this (privileged) parent, the program runs in a
 * child that has dropped to the user, with PAM's environment added.
 *
 *   pam-launch <service> <user> -- <program> [args...]
 *
 * Exit status: the program's, or the program's terminating signal re-raised.
 * 1 when PAM refuses (the message goes to stderr), 2 on bad usage,
 * 126 when privileges cannot be dropped, 127 when the program cannot run.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <security/pam_appl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile pid_t child = -1;

static void forward(int sig) {
  if (child > 0) kill(child, sig);
}

/* Non-interactive conversation: messages go to stderr, prompts fail. */
static int conv(int n, const struct pam_message **msg, struct pam_response **resp, void *data) {
  (void)data;
  if (n <= 0 || n > PAM_MAX_NUM_MSG) return PAM_CONV_ERR;
  struct pam_response *r = calloc((size_t)n, sizeof *r);
  if (!r) return PAM_BUF_ERR;
  for (int i = 0; i < n; i++) {
    if (msg[i]->msg_style == PAM_ERROR_MSG || msg[i]->msg_style == PAM_TEXT_INFO) {
      fprintf(stderr, "%s\n", msg[i]->msg ? msg[i]->msg : "");
    } else {
      free(r);
      return PAM_CONV_ERR;
    }
  }
  *resp = r;
  return PAM_SUCCESS;
}

static int fail(pam_handle_t *ph, const char *what, int rc) {
  fprintf(stderr, "pam-launch: %s: %s\n", what, pam_strerror(ph, rc));
  pam_end(ph, rc);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 5 || strcmp(argv[3], "--") != 0) {
    fprintf(stderr, "usage: pam-launch <service> <user> -- <program> [args...]\n");
    return 2;
  }
  const char *service = argv[1];
  const char *user = argv[2];
  struct passwd *pw = getpwnam(user);
  if (!pw) {
    fprintf(stderr, "pam-launch: unknown user %s\n", user);
    return 1;
  }
  uid_t uid = pw->pw_uid;
  gid_t gid = pw->pw_gid;

  struct pam_conv pc = {conv, NULL};
  pam_handle_t *ph = NULL;
  int rc = pam_start(service, user, &pc, &ph);
  if (rc != PAM_SUCCESS) {
    fprintf(stderr, "pam-launch: pam_start: %s\n", pam_strerror(ph, rc));
    return 1;
  }
  const char *tty = ttyname(0);
  if (tty) pam_set_item(ph, PAM_TTY, tty);
  const char *conn = getenv("SSH_CONNECTION");
  if (conn) {
    char host[64];
    size_t len = strcspn(conn, " ");
    if (len < sizeof host) {
      memcpy(host, conn, len);
      host[len] = '\0';
      pam_set_item(ph, PAM_RHOST, host);
    }
  }
  if ((rc = pam_acct_mgmt(ph, 0)) != PAM_SUCCESS) return fail(ph, "account refused", rc);
  if ((rc = pam_setcred(ph, PAM_ESTABLISH_CRED)) != PAM_SUCCESS) return fail(ph, "credentials refused", rc);
  if ((rc = pam_open_session(ph, 0)) != PAM_SUCCESS) {
    pam_setcred(ph, PAM_DELETE_CRED);
    return fail(ph, "session refused", rc);
  }
  char **penv = pam_getenvlist(ph);

  int sigs[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = forward;
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);

  pid_t pid = fork();
  if (pid < 0) {
    perror("pam-launch: fork");
    pam_close_session(ph, 0);
    pam_end(ph, PAM_SUCCESS);
    return 1;
  }
  if (pid == 0) {
    signal(SIGINT, SIG_DFL);
    signal(SIGQUIT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    for (char **e = penv; e && *e; e++) putenv(*e);
    if (getuid() == 0 && uid != 0) {
      if (initgroups(user, gid) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
        perror("pam-launch: dropping privileges");
        _exit(126);
      }
      if (setuid(0) == 0) {
        fprintf(stderr, "pam-launch: privileges were not dropped\n");
        _exit(126);
      }
    }
    execvp(argv[4], &argv[4]);
    fprintf(stderr, "pam-launch: %s: %s\n", argv[4], strerror(errno));
    _exit(127);
  }
  child = pid;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  pam_close_session(ph, 0);
  pam_setcred(ph, PAM_DELETE_CRED);
  pam_end(ph, PAM_SUCCESS);
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    signal(sig, SIG_DFL);
    kill(getpid(), sig);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
