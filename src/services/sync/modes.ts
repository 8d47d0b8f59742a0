/** Modes as git records them: we only carry the executable bit and the symlink type. */
export const MODE_FILE = 0o100644
export const MODE_EXEC = 0o100755
export const MODE_LINK = 0o120777
