namespace Brickfs.Translators.Core;

/// <summary>
/// The single list of file operations. Each member has a virtual <c>{Name}Async</c> method on
/// <see cref="Translator"/>, a wire message, and a FUSE mapping (or an explicit "none"); tests
/// check all three. Numeric values are the wire encoding: append, never renumber.
/// </summary>
public enum Fop
{
    Lookup = 1,
    Stat = 2,
    Setattr = 3,
    Readlink = 4,
    Mknod = 5,
    Mkdir = 6,
    Unlink = 7,
    Rmdir = 8,
    Symlink = 9,
    Rename = 10,
    Link = 11,
    Open = 12,
    Create = 13,
    Read = 14,
    Write = 15,
    Statfs = 16,
    Flush = 17,
    Release = 18,
    Fsync = 19,
    Setxattr = 20,
    Getxattr = 21,
    Listxattr = 22,
    Removexattr = 23,
    Opendir = 24,
    Readdir = 25,
    Readdirplus = 26,
    Releasedir = 27,
    Fsyncdir = 28,
    Lk = 29,
    Access = 30,
    Fallocate = 31,
    Lseek = 32,
    Xattrop = 33,
    Inodelk = 34,
    Entrylk = 35,
}
