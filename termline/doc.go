// Package termline finds the command line a user sees on their terminal at
// the moment they press Enter in an interactive session, so the bastion can
// apply command block and review rules before it forwards the Enter key. It
// feeds the target's output through a real terminal emulator
// (github.com/charmbracelet/x/vt), remembers where the prompt ended when the
// user started typing a line, and at Enter reads the screen from there to the
// end of the (possibly soft-wrapped) line, so readline editing, history
// recall, tab completion and prompt redraws are seen exactly as the user sees
// them. It is a guard rail for commands typed in plain view, NOT a sandbox:
// it cannot see what a shell will finally run (aliases, functions, variables,
// scripts, eval, key bindings and macros all hide the real command), it
// applies no filtering inside full-screen programs (alternate screen), and a
// user who controls what the terminal displays can make the screen disagree
// with the shell's buffer. Policy evaluation and the user-facing messages
// live in the bastion and policy packages, not here.
package termline
