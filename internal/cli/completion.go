package cli

import (
	"github.com/spf13/cobra"
)

// completionCommand prints a shell's completion script for herald.
func (c *cli) completionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print the shell completion script",
		Long: `Print the completion script of a shell for herald's commands and flags. Load it
in the current shell, or install it for every new one:

  source <(herald completion bash)                                   # bash, this shell
  herald completion bash > /etc/bash_completion.d/herald             # bash, every shell
  herald completion zsh > "${fpath[1]}/_herald"                       # zsh
  herald completion fish > ~/.config/fish/completions/herald.fish    # fish
  herald completion powershell | Out-String | Invoke-Expression      # PowerShell`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("completion takes one shell: bash, zsh, fish or powershell")
			}
			return nil
		},
		ValidArgs:             []string{"bash", "zsh", "fish", "powershell"},
		DisableFlagsInUseLine: true,
		Annotations:           map[string]string{annotationNoLog: "yes"},
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(c.stdout, true)
			case "zsh":
				return root.GenZshCompletion(c.stdout)
			case "fish":
				return root.GenFishCompletion(c.stdout, true)
			case "powershell":
				return root.GenPowerShellCompletionWithDesc(c.stdout)
			}
			return usagef("unknown shell %q: use bash, zsh, fish or powershell", args[0])
		},
	}
}
